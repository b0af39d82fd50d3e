"""Stage 1: the teacher writes several responses per training question at several temperatures."""
from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from rewdistill.faults import kill_point
from rewdistill.io import append_text, read_jsonl_prefix, write_jsonl
from rewdistill.models.load import load_causal_lm
from rewdistill.sampling.backends import HFSampler, teacher_sampler
from rewdistill.stages.common import Ctx


def local_sampler(ctx: Ctx, model_path: str, batch_size: int) -> HFSampler:
    """A transformers sampler for a local model (the student; the teacher with the hf backend)."""
    m = ctx.cfg.models
    model = load_causal_lm(model_path, ctx.device, m.dtype, m.trust_remote_code).eval()
    return HFSampler(model, ctx.tokenizer(model_path), batch_size)


def sample_rows(ctx: Ctx, sampler, questions: list[dict], scfg, seed: int, who: str,
                progress: Path | None = None) -> list[dict]:
    """Responses of `sampler` to `questions` at every temperature of `scfg`, with extracted answers.

    Questions go in fixed chunks of batch_size // n_per_temperature (one generation batch per temperature), each
    with its own seed, so the result does not depend on where a run stopped. With `progress`, every finished
    chunk is appended there at once, and a rerun samples only the chunks that are missing (a torn last line,
    from a kill mid-write, is dropped)."""
    task = ctx.task
    size = max(1, scfg.batch_size // scfg.n_per_temperature)
    n_chunks = (len(questions) + size - 1) // size
    done = {c["chunk"]: c["rows"] for c in read_jsonl_prefix(progress)} if progress else {}
    if progress:
        write_jsonl(progress, [{"chunk": k, "rows": done[k]} for k in sorted(done)])  # rewrite without a torn tail
    bar = tqdm(total=n_chunks, initial=len(done), desc=who, unit="chunk", leave=False)
    for k in range(n_chunks):
        if k in done:
            continue
        chunk = questions[k * size : (k + 1) * size]
        rows = []
        for t_i, temp in enumerate(scfg.temperatures):
            gens = sampler.generate([q["prompt"] for q in chunk], temp, scfg.n_per_temperature, scfg.max_new_tokens,
                                    seed=seed * 1000 + t_i + 100_000 * k)
            for g in gens:
                q = chunk[g.prompt_index]
                rows.append({"qid": q["qid"], "temperature": temp, "text": g.text,
                             "answer": task.extract(g.text, q["_ex"]), "finished": g.finished})
        done[k] = rows
        if progress:
            line = json.dumps({"chunk": k, "rows": rows}) + "\n"
            kill_point("sample-torn", before=lambda: append_text(progress, line[: len(line) // 2]))
            append_text(progress, line)
            kill_point("sample-chunk")
        bar.update(1)
    bar.close()
    return [r for k in range(n_chunks) for r in done[k]]


def run(ctx: Ctx) -> str:
    task = ctx.task
    exs = task.load("train")[: ctx.cfg.task.n_train]
    # Only the qid and prompt travel on; the Example is kept in memory for answer extraction (which,
    # for choice tasks, needs the number of options), never for its gold answer.
    questions = [{"qid": e.qid, "prompt": task.prompt(e), "_ex": e} for e in exs]
    write_jsonl(ctx.path("questions.jsonl"), [{"qid": q["qid"], "prompt": q["prompt"]} for q in questions])
    sampler = teacher_sampler(ctx, ctx.cfg.teacher_sample.batch_size)
    progress = ctx.path("teacher_samples.progress.jsonl")
    rows = sample_rows(ctx, sampler, questions, ctx.cfg.teacher_sample, ctx.cfg.seed, "teacher", progress)
    write_jsonl(ctx.path("teacher_samples.jsonl"), rows)
    progress.unlink()
    parsed = sum(r["answer"] is not None for r in rows)
    return f"{len(rows)} teacher responses to {len(questions)} questions ({parsed / len(rows):.0%} with an answer)"
