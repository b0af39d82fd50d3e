"""Stage 1: the teacher writes several responses per training question at several temperatures."""
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
    write_jsonl(ctx.path("teacher_samples.jsonl"), rows)
    progress.unlink(missing_ok=True)
    parsed = sum(r["answer"] is not None for r in rows)
    return f"{len(rows)} teacher responses to {len(questions)} questions ({parsed / len(rows):.0%} with an answer)"
