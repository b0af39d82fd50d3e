"""Stage 2: self-supervised pseudo-labels for the teacher's responses (the rules live in `labels.py`).

vote (verifiable tasks): majority vote over the extracted answers -> pseudo-label and vote share per question;
a response is label 1 when its answer equals the pseudo-label.
judge (open-ended tasks): the teacher grades every response; label 1 when its score reaches the threshold.
"""
from __future__ import annotations

from rewdistill import labels as L
from rewdistill.io import read_jsonl, write_json, write_jsonl
from rewdistill.stages.common import Ctx


def run(ctx: Ctx) -> str:
    samples = read_jsonl(ctx.path("teacher_samples.jsonl"))
    min_share = ctx.cfg.pseudo_label.min_vote_share
    method = ctx.label_method
    unparsable = 0
    if method == "vote":
        labels = L.vote_labels(samples, min_share)
        labelled = L.agreement_labels(samples, {lab["qid"]: lab for lab in labels})
    else:
        judged, unparsable = ctx.judge(samples, "teacher")
        labels = L.judged_labels(samples, judged, min_share)
        keep = {lab["qid"] for lab in labels if lab["kept"]}
        labelled = [r for r in judged if r["qid"] in keep]
    kept = [lab for lab in labels if lab["kept"]]
    if not kept:
        what = "judged share of good responses" if method == "judge" else "vote share"
        raise RuntimeError(
            f"no question reached the minimum {what} {min_share} ({len(labels)} dropped"
            f"{f', {unparsable} judgements unparsable' if unparsable else ''}); "
            "lower --pseudo_label.min_vote_share or sample more teacher responses"
        )
    write_jsonl(ctx.path("labels.jsonl"), labels)
    if method == "vote" and ctx.path("selection_samples.jsonl").exists():  # the rl stage's checkpoint selection
        write_jsonl(ctx.path("selection_labels.jsonl"),
                    L.vote_labels(read_jsonl(ctx.path("selection_samples.jsonl")), min_share))
    write_jsonl(ctx.path("teacher_labelled.jsonl"), labelled)
    pos = sum(r["label"] for r in labelled)
    write_json(ctx.path("pseudo_label_stats.json"), {
        "method": method, "questions": len(labels), "questions_kept": len(kept), "min_vote_share": min_share,
        "responses": len(samples), "responses_kept": len(labelled), "responses_label_1": pos,
        "judge_unparsable": unparsable,
        "mean_vote_share_kept": sum(lab["vote_share"] for lab in kept) / len(kept),
    })
    extra = f"; {unparsable} judgements unparsable (dropped)" if method == "judge" else ""
    return (f"{method}: kept {len(kept)}/{len(labels)} questions (share >= {min_share}); "
            f"{pos}/{len(labelled)} teacher responses labelled 1{extra}")
