"""Majority vote over extracted final answers: the self-supervised pseudo-label."""
from __future__ import annotations

from collections import Counter


def majority_vote(answers: list[str | None]) -> tuple[str | None, float]:
    """Most common non-None answer and its share of *all* answers (an unparsable answer votes for nothing).

    Ties go to the answer seen first, so the result is deterministic.
    >>> majority_vote(["3", "4", "3", None])
    ('3', 0.5)
    """
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, 0.0
    best, count = max(votes.items(), key=lambda kv: kv[1])  # max keeps the first of equal counts
    return best, count / len(answers)


def weighted_vote_shares(answers: list[str | None], groups: list[int], weights: list[float]) -> list[float]:
    """Each response's share of its group's vote weight that went to its own answer (0.0 without an answer).

    A group is the responses with the same `groups` value (one prompt's rollouts). With unit weights this is
    the plain vote share (self-consistency); with reward-model weights it is a reward-weighted vote, which
    scores the *answer*, so a response cannot raise its reward by wording alone.
    >>> weighted_vote_shares(["3", "4", "3", None], [0, 0, 0, 0], [1.0, 1.0, 1.0, 1.0])
    [0.5, 0.25, 0.5, 0.0]
    >>> weighted_vote_shares(["3", "4", "3"], [0, 0, 1], [1.0, 3.0, 2.0])
    [0.25, 0.75, 1.0]
    """
    total: dict[int, float] = {}
    per_answer: dict[tuple[int, str], float] = {}
    for a, g, w in zip(answers, groups, weights):
        total[g] = total.get(g, 0.0) + w
        if a is not None:
            per_answer[(g, a)] = per_answer.get((g, a), 0.0) + w
    out = []
    for a, g in zip(answers, groups):
        out.append(0.0 if a is None or total[g] <= 0 else per_answer[(g, a)] / total[g])
    return out
