"""Stage 1: the teacher writes several responses per training question at several temperatures."""
from __future__ import annotations

from rewdistill.io import write_jsonl
from rewdistill.models.load import load_causal_lm
from rewdistill.sampling.backends import HFSampler, teacher_sampler
from rewdistill.stages.common import Ctx


def local_sampler(ctx: Ctx, model_path: str, batch_size: int) -> HFSampler:
    """A transformers sampler for a local model (the student; the teacher with the hf backend)."""
    m = ctx.cfg.models
    model = load_causal_lm(model_path, ctx.device, m.dtype, m.trust_remote_code).eval()
    return HFSampler(model, ctx.tokenizer(model_path), batch_size)


def sample_rows(ctx: Ctx, sampler, questions: list[dict], scfg, seed: int, who: str) -> list[dict]:
    """Responses of `sampler` to `questions` at every temperature of `scfg`, with extracted answers."""
    task = ctx.task
    prompts = [q["prompt"] for q in questions]
    exs = [q["_ex"] for q in questions]
    rows = []
    for t_i, temp in enumerate(scfg.temperatures):
        gens = sampler.generate(prompts, temp, scfg.n_per_temperature, scfg.max_new_tokens,
                                seed=seed * 1000 + t_i, desc=f"{who} T={temp}")
        for g in gens:
            q = questions[g.prompt_index]
            rows.append({"qid": q["qid"], "temperature": temp, "text": g.text,
                         "answer": task.extract(g.text, exs[g.prompt_index]), "finished": g.finished})
    return rows


def run(ctx: Ctx) -> str:
    task = ctx.task
    exs = task.load("train")[: ctx.cfg.task.n_train]
    # Only the qid and prompt travel on; the Example is kept in memory for answer extraction (which,
    # for choice tasks, needs the number of options), never for its gold answer.
    questions = [{"qid": e.qid, "prompt": task.prompt(e), "_ex": e} for e in exs]
    write_jsonl(ctx.path("questions.jsonl"), [{"qid": q["qid"], "prompt": q["prompt"]} for q in questions])
    sampler = teacher_sampler(ctx, ctx.cfg.teacher_sample.batch_size)
    rows = sample_rows(ctx, sampler, questions, ctx.cfg.teacher_sample, ctx.cfg.seed, "teacher")
    write_jsonl(ctx.path("teacher_samples.jsonl"), rows)
    parsed = sum(r["answer"] is not None for r in rows)
    return f"{len(rows)} teacher responses to {len(questions)} questions ({parsed / len(rows):.0%} with an answer)"
