"""Stage 2: majority vote over the teacher's answers -> pseudo-label and vote share per question."""
from __future__ import annotations

from collections import defaultdict

from rewdistill.algo.voting import majority_vote
from rewdistill.io import read_jsonl, write_json, write_jsonl
from rewdistill.stages.common import Ctx, label_samples


def run(ctx: Ctx) -> str:
    samples = read_jsonl(ctx.path("teacher_samples.jsonl"))
    by_q: dict[str, list] = defaultdict(list)
    for s in samples:
        by_q[s["qid"]].append(s["answer"])
    min_share = ctx.cfg.pseudo_label.min_vote_share
    labels = []
    for qid, answers in by_q.items():
        pseudo, share = majority_vote(answers)
        labels.append({"qid": qid, "pseudo_answer": pseudo, "vote_share": share, "n": len(answers),
                       "kept": pseudo is not None and share >= min_share})
    kept = [l for l in labels if l["kept"]]
    if not kept:
        raise RuntimeError(
            f"no question reached the minimum vote share {min_share} ({len(labels)} dropped); "
            "lower --pseudo_label.min_vote_share or sample more teacher responses"
        )
    write_jsonl(ctx.path("labels.jsonl"), labels)
    labelled = label_samples(samples, {l["qid"]: l for l in labels})
    write_jsonl(ctx.path("teacher_labelled.jsonl"), labelled)
    pos = sum(r["label"] for r in labelled)
    write_json(ctx.path("pseudo_label_stats.json"), {
        "questions": len(labels), "questions_kept": len(kept), "min_vote_share": min_share,
        "responses": len(samples), "responses_kept": len(labelled), "responses_label_1": pos,
        "mean_vote_share_kept": sum(l["vote_share"] for l in kept) / len(kept),
    })
    return (f"kept {len(kept)}/{len(labels)} questions (vote share >= {min_share}); "
            f"{pos}/{len(labelled)} teacher responses agree with their pseudo-label")
