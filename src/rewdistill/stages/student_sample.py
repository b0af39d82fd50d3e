"""Stage 4: the student samples responses, labelled against the teacher's pseudo-labels.

Round 1 samples the SFT student; round r > 1 (rl.rounds) samples round r-1's RL student into `round<r>/`.
"""
from __future__ import annotations

from rewdistill.io import write_jsonl
from rewdistill.sampling.rows import sample_rows
from rewdistill.stages.common import Ctx


def run(ctx: Ctx) -> str:
    r = ctx.round
    labels = ctx.labels()
    questions = [q for q in ctx.questions() if labels[q["qid"]]["kept"]]
    policy = ctx.path("student_sft") if r == 1 else ctx.round_path("student_rl", r - 1)
    sampler = ctx.local_sampler(str(policy), ctx.cfg.student_sample.batch_size)
    out = ctx.round_path("student_samples.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = out.with_name("student_samples.progress.jsonl")
    seed = ctx.cfg.seed + 1 if r == 1 else ctx.cfg.seed + 10 + r
    who = "student" if r == 1 else f"student_round{r}"
    rows = sample_rows(sampler, questions, ctx.cfg.student_sample, seed, who, ctx.extract, progress, ctx.shard,
                       ctx.merge)
    labelled = ctx.label_new(rows, labels, who)
    write_jsonl(out, labelled)
    progress.unlink(missing_ok=True)
    pos = sum(row["label"] for row in labelled)
    return f"{len(labelled)} student responses, {pos / max(1, len(labelled)):.0%} agree with the pseudo-label"
