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
