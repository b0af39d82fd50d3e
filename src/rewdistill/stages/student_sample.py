"""Stage 4: the SFT student samples responses, labelled against the teacher's pseudo-labels."""
from __future__ import annotations

from rewdistill.io import read_jsonl, write_jsonl
from rewdistill.stages.common import Ctx, label_rows
from rewdistill.sampling.backends import local_sampler
from rewdistill.stages.teacher_sample import sample_rows


def run(ctx: Ctx) -> str:
    labels = {l["qid"]: l for l in read_jsonl(ctx.path("labels.jsonl"))}
    task = ctx.task
    by_id = {e.qid: e for e in task.load("train")}
    questions = [{**q, "_ex": by_id[q["qid"]]} for q in ctx.questions() if labels[q["qid"]]["kept"]]
    sampler = local_sampler(ctx, str(ctx.path("student_sft")), ctx.cfg.student_sample.batch_size)
    progress = ctx.path("student_samples.progress.jsonl")
    rows = sample_rows(ctx, sampler, questions, ctx.cfg.student_sample, ctx.cfg.seed + 1, "student", progress)
    labelled = label_rows(ctx, rows, labels, "student")
    write_jsonl(ctx.path("student_samples.jsonl"), labelled)
    progress.unlink(missing_ok=True)
    pos = sum(r["label"] for r in labelled)
    return f"{len(labelled)} student responses, {pos / max(1, len(labelled)):.0%} agree with the pseudo-label"
