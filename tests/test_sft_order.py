"""benchmarks/sft_order.py: its batch orders and row kinds are what its modes say, and it leaves the library as it
found it."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from accelerate import Accelerator

import rewdistill.train.loop as loop
import rewdistill.train.sft as sft_train
from rewdistill.models.load import load_causal_lm
from rewdistill.train.sft import train_sft
from tests.conftest import save_tiny

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


@pytest.mark.parametrize("mode, batching, prompts_per_batch, packed", [
    ("random", "random", None, False), ("question", "question", {1}, True), ("grouped-padded", "question", {1}, False),
    ("pairs-packed", "question", {1, 2}, True), ("pairs-padded", "question", {1, 2}, False)])
def test_each_mode_trains_in_its_order_and_rows(monkeypatch, tmp_path, other_tokenizer, mode, batching,
                                                prompts_per_batch, packed):
    """A real (micro) train_sft under the mode's config and patches: which prompts share a batch, and whether the
    loss was asked for packed rows; the library's functions are back afterwards."""
    assert sft_order.batching_of(mode) == batching
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    pairs = [([10 + q, 11], [12 + i, 13]) for q in range(6) for i in range(4)]  # 6 prompts x 4 responses
    seen = []
    real = sft_train.sft_loss

    def spy(model, chunk, pad_id, device, accelerator=None, packed=False, weights=None, suffix=False):
        seen.append(({tuple(p) for p, _ in chunk}, packed))
        return real(model, chunk, pad_id, device, accelerator, packed, weights, suffix)

    monkeypatch.setattr(sft_train, "sft_loss", spy)
    shuffle = loop.grouped_shuffle
    with sft_order.patched(mode):
        train_sft(load_causal_lm(path), pairs, 0, epochs=2, lr=1e-2, batch_size=4, warmup_frac=0.0,
                  weight_decay=0.0, accelerator=Accelerator(cpu=True), seed=0, log=lambda row: None,
                  batching=batching)
    assert {p for _, p in seen} == {packed}
    counts = {len(prompts) for prompts, _ in seen}
    if prompts_per_batch is None:
        assert max(counts) > 2  # independent draws: batches of 4 mostly mix prompts
    else:
        assert counts <= prompts_per_batch and max(counts) == max(prompts_per_batch)
    assert sft_train.sft_loss is spy and loop.grouped_shuffle is shuffle  # restored
