"""Stage 2: self-supervised pseudo-labels for the teacher's responses.

vote (verifiable tasks): majority vote over the extracted answers -> pseudo-label and vote share per question;
a response is label 1 when its answer equals the pseudo-label.
judge (open-ended tasks): the teacher grades every response (`judge.py`); label 1 when its score reaches the
threshold; the question's share is the fraction of its judged responses with label 1.
"""
from __future__ import annotations

from collections import defaultdict

from rewdistill.algo.voting import majority_vote
from rewdistill.io import read_jsonl, write_json, write_jsonl
from rewdistill.stages.common import Ctx, judge_samples, label_method, label_samples


def run(ctx: Ctx) -> str:
    samples = read_jsonl(ctx.path("teacher_samples.jsonl"))
    min_share = ctx.cfg.pseudo_label.min_vote_share
    method = label_method(ctx.cfg)
    unparsable = 0
    if method == "vote":
        by_q: dict[str, list] = defaultdict(list)
        for s in samples:
            by_q[s["qid"]].append(s["answer"])
        labels = []
        for qid, answers in by_q.items():
            pseudo, share = majority_vote(answers)
            labels.append({"qid": qid, "pseudo_answer": pseudo, "vote_share": share, "n": len(answers),
                           "kept": pseudo is not None and share >= min_share})
        by_id = {l["qid"]: l for l in labels}
        labelled = label_samples(samples, by_id)
    else:
        judged, unparsable = judge_samples(ctx, samples, "teacher")
        by_q = defaultdict(list)
        for r in judged:
            by_q[r["qid"]].append(r["label"])
        labels = []
        for qid in dict.fromkeys(s["qid"] for s in samples):
            got = by_q.get(qid, [])
            share = sum(got) / len(got) if got else 0.0
            labels.append({"qid": qid, "pseudo_answer": None, "vote_share": share, "n": len(got),
                           "kept": sum(got) > 0 and share >= min_share})
        keep = {l["qid"] for l in labels if l["kept"]}
        labelled = [r for r in judged if r["qid"] in keep]
    kept = [l for l in labels if l["kept"]]
    if not kept:
        what = "judged share of good responses" if method == "judge" else "vote share"
        raise RuntimeError(
            f"no question reached the minimum {what} {min_share} ({len(labels)} dropped"
            f"{f', {unparsable} judgements unparsable' if unparsable else ''}); "
            "lower --pseudo_label.min_vote_share or sample more teacher responses"
        )
    write_jsonl(ctx.path("labels.jsonl"), labels)
    write_jsonl(ctx.path("teacher_labelled.jsonl"), labelled)
    pos = sum(r["label"] for r in labelled)
    write_json(ctx.path("pseudo_label_stats.json"), {
        "method": method, "questions": len(labels), "questions_kept": len(kept), "min_vote_share": min_share,
        "responses": len(samples), "responses_kept": len(labelled), "responses_label_1": pos,
        "judge_unparsable": unparsable,
        "mean_vote_share_kept": sum(l["vote_share"] for l in kept) / len(kept),
    })
    extra = f"; {unparsable} judgements unparsable (dropped)" if method == "judge" else ""
    return (f"{method}: kept {len(kept)}/{len(labels)} questions (share >= {min_share}); "
            f"{pos}/{len(labelled)} teacher responses labelled 1{extra}")
