"""Pseudo-labels, in one place: no gold answers, only the teacher's own responses.

vote (verifiable tasks): majority vote over a question's extracted answers gives its pseudo-label and vote share;
a response is label 1 when its answer equals the pseudo-label (`vote_labels`, `agreement_labels`).
judge (open-ended tasks, the paper's later version): the teacher grades every response with a rubric and ends with
`Score: N` (1-10); `parse_score` reads it robustly, an unparsable judgement is counted and its response dropped
(never guessed); a response is label 1 when its score reaches the threshold, and a question's share is the fraction
of its judged responses with label 1 (`judge_scores`, `judged_labels`).
"""
from __future__ import annotations

import re
from collections import defaultdict

from rewdistill.algo.voting import majority_vote

RUBRIC_MARK = "You are a strict grader."
RUBRIC = (RUBRIC_MARK + " Judge whether the response answers the question correctly. Check its reasoning and its "
          "final answer. Reply with a short justification, then a final line \"Score: N\" where N is an integer "
          "from 1 (wrong) to 10 (certainly correct).\n\n[Question]\n{question}\n\n[Response]\n{response}\n\n"
          "[Your judgement]")
_PATTERNS = [
    re.compile(r"score\s*[:=]\s*\**\s*\[*(\d+(?:\.\d+)?)\s*\]*\s*(?:/\s*10)?", re.IGNORECASE),
    re.compile(r"rating\s*[:=]\s*\**\s*\[*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"\[\[(\d+(?:\.\d+)?)\]\]"),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b"),
]


def judge_prompt(question: str, response: str) -> str:
    return RUBRIC.format(question=question.strip(), response=response.strip())


def parse_score(text: str, lo: float = 1, hi: float = 10) -> float | None:
    """The judge's score: the last `Score: N` (or `Rating: N`, `[[N]]`, `N/10`) within [lo, hi]; else None.

    >>> parse_score("Good steps.\\nScore: 8")
    8.0
    >>> parse_score("**Score:** [[3]]/10"), parse_score("I would say 7/10."), parse_score("Looks right.")
    (3.0, 7.0, None)
    """
    for pat in _PATTERNS:
        found = [float(x) for x in pat.findall(text)]
        found = [x for x in found if lo <= x <= hi]
        if found:
            return found[-1]
    return None


def judge_scores(sampler, prompts: dict[str, str], rows: list[dict], max_new_tokens: int, seed: int,
                 desc: str | None = None) -> list[float | None]:
    """The judge's score (or None) of each row {qid, text}, greedy, one judgement per response."""
    judge_prompts = [judge_prompt(prompts[r["qid"]], r["text"]) for r in rows]
    gens = sampler.generate(judge_prompts, 0.0, 1, max_new_tokens, seed=seed, desc=desc)
    return [parse_score(g.text) for g in gens]


def method_for(method: str, task_name: str, answer_type: str) -> str:
    """vote or judge (`pseudo_label.method`; auto = judge for free-text answers, which cannot be voted on)."""
    if method == "auto":
        return "judge" if task_name == "jsonl" and answer_type == "text" else "vote"
    return method


def vote_labels(samples: list[dict], min_share: float) -> list[dict]:
    """Per question (in first-seen order): {qid, pseudo_answer, vote_share, n, kept} from the samples' answers."""
    by_q: dict[str, list] = defaultdict(list)
    for s in samples:
        by_q[s["qid"]].append(s["answer"])
    labels = []
    for qid, answers in by_q.items():
        pseudo, share = majority_vote(answers)
        labels.append({"qid": qid, "pseudo_answer": pseudo, "vote_share": share, "n": len(answers),
                       "kept": pseudo is not None and share >= min_share})
    return labels


def answer_shares(samples: list[dict]) -> dict[str, dict[str, float]]:
    """Per question: each answer's share of the question's samples ({qid: {answer: share}}; None answers count in
    the denominator but get no share)."""
    by_q: dict[str, list] = defaultdict(list)
    for s in samples:
        by_q[s["qid"]].append(s["answer"])
    out = {}
    for qid, answers in by_q.items():
        out[qid] = {}
        for a in answers:
            if a is not None:
                out[qid][a] = out[qid].get(a, 0.0) + 1.0 / len(answers)
    return out


def teacher_vote_score(answers: list[list[str | None]], shares: list[dict[str, float]]) -> float:
    """Mean over questions and their sampled answers of the teacher's vote share for that answer: the expected
    agreement of a policy sample with a teacher sample. answers[i]: the policy's answers to question i; shares[i]:
    the teacher's answer shares there (`answer_shares`)."""
    per_q = []
    for ans, sh in zip(answers, shares):
        per_q.append(sum(sh.get(a, 0.0) for a in ans if a is not None) / len(ans))
    return sum(per_q) / len(per_q)


def agreement_labels(samples: list[dict], labels: dict[str, dict]) -> list[dict]:
    """Samples of kept questions with label 1/0: agreement with the question's pseudo-label."""
    out = []
    for s in samples:
        lab = labels.get(s["qid"])
        if lab is None or not lab["kept"]:
            continue
        out.append({**s, "label": int(s["answer"] is not None and s["answer"] == lab["pseudo_answer"])})
    return out


def judged_rows(samples: list[dict], scores: list[float | None], threshold: float) -> list[dict]:
    """Samples with `judge_score` and `label` (score >= threshold); unparsable judgements (None) are dropped."""
    return [{**s, "judge_score": sc, "label": int(sc >= threshold)} for s, sc in zip(samples, scores) if sc is not None]


def judged_labels(samples: list[dict], judged: list[dict], min_share: float) -> list[dict]:
    """Per question: the share of its judged responses with label 1; kept when some are good and share >= min."""
    by_q: dict[str, list] = defaultdict(list)
    for r in judged:
        by_q[r["qid"]].append(r["label"])
    labels = []
    for qid in dict.fromkeys(s["qid"] for s in samples):
        got = by_q.get(qid, [])
        share = sum(got) / len(got) if got else 0.0
        labels.append({"qid": qid, "pseudo_answer": None, "vote_share": share, "n": len(got),
                       "kept": sum(got) > 0 and share >= min_share})
    return labels


def distinct(rows: list[dict]) -> list[dict]:
    """The first copy of each (question, response text), in order: a teacher sampled at low temperature repeats itself
    (two thirds of the tiny tasks' label-1 responses are repeats)."""
    return list(counted(rows).values())


def counted(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Each distinct (question, response text) -> its first row, with "count": how many rows repeat it, in order."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["qid"], r["text"])
        if key in out:
            out[key]["count"] += 1
        else:
            out[key] = {**r, "count": 1}
    return out
