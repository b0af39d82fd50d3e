"""sft.batching length (`train.loop.length_grouped`): every item once per epoch, whole batches of similar lengths
drawn from small sorted windows, the incomplete batch last (fit drops it), and far less padding than random."""
from __future__ import annotations

import random

import torch
from accelerate import Accelerator

from rewdistill.train.loop import fit, length_grouped, shuffled


def padded(order: list[int], length: list[int], batch: int) -> int:
    """Tokens of the whole batches cut from `order`, each padded to its longest item."""
    whole = len(order) - len(order) % batch
    return sum(batch * max(length[i] for i in order[lo : lo + batch]) for lo in range(0, whole, batch))


def test_every_item_once_whole_batches_from_sorted_windows_the_rest_last():
    rng = random.Random(0)
    for trial in range(30):
        n, batch = rng.randint(1, 300), rng.randint(1, 16)
        length = [rng.randint(1, 200) for _ in range(n)]
        order = length_grouped(list(range(n)), length.__getitem__, batch, random.Random(trial))
        assert sorted(order) == list(range(n))
        first = list(range(n))
        random.Random(trial).shuffle(first)  # the function's own first shuffle (the same seed)
        whole = n - n % batch
        assert order[whole:] == first[whole:]  # the incomplete batch last, as shuffled
        runs = {}  # each window of 4 batches, sorted longest first, cut into its batches
        for lo in range(0, whole, 4 * batch):
            run = sorted(first[lo : min(lo + 4 * batch, whole)], key=length.__getitem__, reverse=True)
            for b in range(0, len(run), batch):
                runs[tuple(run[b : b + batch])] = True
        got = [tuple(order[lo : lo + batch]) for lo in range(0, whole, batch)]
        assert sorted(got) == sorted(runs)  # exactly the windows' batches, in some order


def test_batches_are_cut_from_windows_of_four_and_shuffled():
    """Within one epoch a window's four batches hold its items, longest to shortest; the batches' order varies."""
    rng = random.Random(1)
    length = [rng.randint(1, 100) for _ in range(256)]
    a = length_grouped(list(range(256)), length.__getitem__, 16, random.Random(0))
    b = length_grouped(list(range(256)), length.__getitem__, 16, random.Random(1))
    assert a != b and sorted(a) == sorted(b)
    first = list(range(256))
    random.Random(0).shuffle(first)  # the function's own first shuffle: window w = first[64 w : 64 (w + 1)]
    window = {item: pos // 64 for pos, item in enumerate(first)}
    of_batch = [window[a[lo]] for lo in range(0, 256, 16)]  # (16,) the window each batch came from
    assert all(window[i] == w for w, lo in zip(of_batch, range(0, 256, 16)) for i in a[lo : lo + 16])
    assert of_batch != sorted(of_batch)  # the batches are shuffled, not served window after window


def test_far_less_padding_than_a_random_order():
    rng = random.Random(0)
    length = [rng.randint(20, 200) for _ in range(2048)]
    rand = padded(shuffled(list(range(2048)), random.Random(0)), length, 32)
    grouped = padded(length_grouped(list(range(2048)), length.__getitem__, 32, random.Random(0)), length, 32)
    real = sum(length)
    assert (grouped - real) < 0.35 * (rand - real)


def test_fit_trains_on_whole_length_sorted_batches_and_drops_the_rest():
    """fit(length_of=...) takes each epoch's order from length_grouped: every micro-batch whole and sorted longest
    first, a fresh order each epoch, the incomplete batch never trained on."""
    length = [random.Random(i).randint(1, 50) for i in range(70)]
    seen: list[list[int]] = []
    model = torch.nn.Linear(2, 1)

    def batch_loss(m, chunk):
        seen.append(list(chunk))
        return m(torch.ones(1, 2)).sum() * 0.0, {}

    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), list(range(70)), batch_loss, epochs=2, batch_size=16,
        lr=0.1, warmup_frac=0.0, accelerator=Accelerator(cpu=True), rng=random.Random(0), log=lambda r: None,
        name="t", kill_at="t", hint="", length_of=length.__getitem__)
    assert len(seen) == 2 * (70 // 16) and all(len(c) == 16 for c in seen)
    assert all([length[i] for i in c] == sorted((length[i] for i in c), reverse=True) for c in seen)
    assert seen[:4] != seen[4:]  # each epoch shuffles afresh
