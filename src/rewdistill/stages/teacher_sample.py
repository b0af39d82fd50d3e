"""Stage 1: the teacher writes several responses per training question at several temperatures.

It also answers `task.n_selection` validation questions the same way (gold never read): their pseudo-labels let the
rl stage choose its checkpoint without gold (`rl.select`)."""
from __future__ import annotations

from rewdistill.io import write_jsonl
from rewdistill.sampling.rows import sample_rows
from rewdistill.stages.common import Ctx


def run(ctx: Ctx) -> str:
    task = ctx.task
    qs = task.questions("train")[: ctx.cfg.task.n_train]  # no gold answers
    questions = [{"qid": q.qid, "prompt": task.prompt(q)} for q in qs]
    write_jsonl(ctx.path("questions.jsonl"), questions)
    sampler = ctx.teacher_sampler(ctx.cfg.teacher_sample.batch_size)
    progress = ctx.path("teacher_samples.progress.jsonl")
    rows = sample_rows(sampler, questions, ctx.cfg.teacher_sample, ctx.cfg.seed, "teacher", ctx.extract, progress,
                       ctx.shard, ctx.merge)
    n_sel = ctx.cfg.task.n_selection
    if n_sel:  # held-out questions for checkpoint selection: the tail of validation (the gold watch reads its head)
        qs_sel = task.questions("validation")[-n_sel:]
        by_id = {q.qid: q for q in qs_sel}
        sel = [{"qid": q.qid, "prompt": task.prompt(q)} for q in qs_sel]
        write_jsonl(ctx.path("selection_questions.jsonl"), sel)
        sel_progress = ctx.path("selection_samples.progress.jsonl")
        sel_rows = sample_rows(sampler, sel, ctx.cfg.teacher_sample, ctx.cfg.seed + 7919, "teacher (selection)",
                               lambda text, qid: task.extract(text, by_id[qid]), sel_progress)
        write_jsonl(ctx.path("selection_samples.jsonl"), sel_rows)
        sel_progress.unlink(missing_ok=True)
    write_jsonl(ctx.path("teacher_samples.jsonl"), rows)
    progress.unlink(missing_ok=True)
    parsed = sum(r["answer"] is not None for r in rows)
    return f"{len(rows)} teacher responses to {len(questions)} questions ({parsed / len(rows):.0%} with an answer)"
