"""benchmarks/sft_order.py: its batch orders and row kinds are what its modes say, and it leaves the library as it
found it."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

import rewdistill.train.loop as loop
import rewdistill.train.sft as sft_train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sft_order  # noqa: E402


def runs(order: list, group_of) -> list[int]:
    """Lengths of the maximal runs of consecutive items of one group."""
    out, prev = [], object()
    for item in order:
        g = group_of(item)
        if g == prev:
            out[-1] += 1
        else:
            out.append(1)
        prev = g
    return out


def test_pairs_shuffle_keeps_every_item_and_cuts_groups_into_pairs():
    items = [(q, i) for q in range(8) for i in range(6)]  # 8 questions x 6 responses
    group_of = lambda item: item[0]  # noqa: E731
    longest = []
    for seed in range(5):
        order = sft_order.pairs_shuffle(list(items), group_of, random.Random(seed))
        assert sorted(order) == sorted(items)
        lengths = runs(order, group_of)
        assert all(n % 2 == 0 for n in lengths)  # whole pairs only (adjacent pairs may touch)
        longest.append(max(lengths))
    assert min(longest) < 6  # not whole questions (grouped_shuffle would give runs of 6 every time)
    whole = loop.grouped_shuffle(list(items), group_of, random.Random(0))
    assert set(runs(whole, group_of)) == {6}  # the comparison: question batching keeps a question whole


@pytest.mark.parametrize("mode, pairs_order, packed", [("random", False, True), ("question", False, True),
                                                       ("grouped-padded", False, False),
                                                       ("pairs-packed", True, True), ("pairs-padded", True, False)])
def test_train_swaps_order_and_rows_for_the_mode_only(monkeypatch, mode, pairs_order, packed):
    calls = []
    monkeypatch.setattr(sft_train, "sft_loss", lambda *a: calls.append(a[5]))  # records the packing flag
    original_loss, original_shuffle = sft_train.sft_loss, loop.grouped_shuffle
    seen = {}

    def fake_run(ctx):
        seen["pairs"] = loop.grouped_shuffle is sft_order.pairs_shuffle
        sft_train.sft_loss("model", [], 0, "cpu", None, True, None)  # the stage asks for packed rows
        raise RuntimeError("stage failed")

    monkeypatch.setattr(sft_order.sft, "run", fake_run)
    monkeypatch.setattr(sft_order, "Ctx", lambda *a, **k: None)
    with pytest.raises(RuntimeError):
        sft_order.train(mode, cfg=None, d=Path("."))
    assert seen["pairs"] is pairs_order
    assert calls == [packed]
    assert sft_train.sft_loss is original_loss and loop.grouped_shuffle is original_shuffle  # restored
