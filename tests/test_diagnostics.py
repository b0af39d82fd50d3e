"""Gold-reading diagnostics on hand-computed numbers."""
from __future__ import annotations

import pytest

from rewdistill.diagnostics import auc, ranking
from rewdistill.tasks import get_task


def test_auc_counts_ties_half():
    assert auc([0.9, 0.1, 0.5], [1, 0, 1]) == 1.0
    assert auc([0.1, 0.1], [1, 0]) == 0.5
    assert auc([0.3], [1]) is None


def test_ranking_by_hand():
    task = get_task("tiny-arith")
    exs = task.load("test")[:2]
    right = [f"x\n#### {e.answer}" for e in exs]
    wrong = "x\n#### -5"
    groups = [[(0.9, wrong), (0.1, right[0]), (0.5, wrong), (0.2, right[0])],  # the RM ranks wrong answers first
              [(0.3, right[1]), (0.2, wrong), (0.1, wrong), (0.0, wrong)]]  # ... and here right
    r = ranking(task, exs, groups)
    assert r["k"] == 4 and r["mixed_questions"] == 2
    assert r["sample_mean"] == pytest.approx(3 / 8)
    assert r["rm_best_of_k"] == pytest.approx(0.5)  # picks wrong in q0, right in q1
    assert r["maj_at_k"] == 0.0  # q0: a 2-2 tie goes to the first seen (wrong); q1: wrong 3-1
    assert r["pass_at_k"] == 1.0
    assert r["rm_auc_within"] == pytest.approx(0.5)  # 0 within q0, 1 within q1
    # over all 8: right scores 0.1, 0.2, 0.3 against wrong 0.9, 0.5, 0.2, 0.1, 0.0 -> (1.5 + 2.5 + 3) / 15
    assert r["rm_auc"] == pytest.approx(7 / 15)


def test_spearman_by_hand():
    from rewdistill.diagnostics import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1 2 3, y = 1 3 2 -> rho = 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    assert spearman([0.1, 0.2, 0.3], [5, 9, 7]) == pytest.approx(0.5)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def test_paired_bootstrap_interval():
    from rewdistill.diagnostics import paired_bootstrap

    same = paired_bootstrap([True, False] * 50, [True, False] * 50)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0
    better = paired_bootstrap([True] * 60 + [False] * 40, [True] * 40 + [False] * 60)  # +20 points on 100 pairs
    assert better["diff"] == pytest.approx(0.2) and 0.1 < better["lo"] < 0.2 < better["hi"] < 0.3
    one_flip = paired_bootstrap([True] + [False] * 99, [False] * 100)  # +1 point: the interval holds 0
    assert one_flip["lo"] <= 0 < one_flip["hi"]
