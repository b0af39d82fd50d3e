"""train.loop: the shared optimiser-step skeleton on a toy linear model (shuffling, accumulation, skips, resume)."""
from __future__ import annotations

import math
import random

import pytest
import torch
from accelerate import Accelerator

from rewdistill.train.checkpoint import Checkpoint
from rewdistill.train.guard import NonFiniteError
from rewdistill.train.loop import fit, optimizer_step

X = torch.arange(12, dtype=torch.float32).reshape(6, 2) / 10  # (6, 2) inputs of items 0..5
Y = X @ torch.tensor([1.0, -2.0]) + 0.5  # (6,) targets


def toy():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)


def mse(model, chunk):
    pred = model(X[chunk]).squeeze(-1)  # (B,)
    return ((pred - Y[chunk]) ** 2).mean(), {"n": float(len(chunk))}


def run(items=range(6), *, epochs=2, batch_size=2, accum=1, loss=mse, seed=0, **kw):
    model, seen, rows = toy(), [], []

    def batch_loss(m, chunk):
        seen.append(list(chunk))
        return loss(m, chunk)

    kw = {"name": "toy", "kill_at": "toy-step", "hint": "", **kw}
    model = fit(model, torch.optim.AdamW(model.parameters(), lr=0.1), list(items), batch_loss, epochs=epochs,
                batch_size=batch_size, lr=0.1, warmup_frac=0.0,
                accelerator=Accelerator(cpu=True, gradient_accumulation_steps=accum), rng=random.Random(seed),
                log=rows.append, **kw)
    return model, seen, rows


def test_optimizer_step_sets_lr_clips_steps_and_zeroes():
    model = toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    w0 = model.weight.detach().clone()
    model(torch.ones(1, 2)).sum().mul(100).backward()  # gradient norm 100 * sqrt(3)
    norm, skipped = optimizer_step(Accelerator(cpu=True), model, opt, lr=1.0)
    assert not skipped and opt.param_groups[0]["lr"] == 1.0
    assert float(norm) == pytest.approx(100 * 3**0.5)
    assert torch.allclose(w0 - model.weight, torch.full_like(w0, 1 / 3**0.5))  # clipped to norm 1: each 1/sqrt(3)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_optimizer_step_skips_when_asked_or_when_the_norm_is_not_finite():
    model = toy()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    w0 = model.weight.detach().clone()
    model(torch.ones(1, 2)).sum().backward()
    norm, skipped = optimizer_step(Accelerator(cpu=True), model, opt, lr=1.0, skip=True)
    assert skipped and math.isnan(norm) and torch.equal(w0, model.weight)  # NaN norm, weights untouched
    model(torch.ones(1, 2)).sum().mul(float("inf")).backward()
    _, skipped = optimizer_step(Accelerator(cpu=True), model, opt, lr=1.0)
    assert skipped and torch.equal(w0, model.weight)


def test_fresh_order_reshuffles_the_items_each_epoch_carried_order_reshuffles_the_last():
    for carry in (False, True):
        _, seen, rows = run(carry_order=carry)
        rng, order, expected = random.Random(0), list(range(6)), []
        for _ in range(2):
            order = list(order if carry else range(6))
            rng.shuffle(order)
            expected += [order[i : i + 2] for i in range(0, 6, 2)]
        assert seen == expected
        assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in rows] == [0] * 3 + [1] * 3
    assert run(carry_order=False)[1] != run(carry_order=True)[1]  # the two rules give different second epochs


def test_rows_hold_the_mean_stats_of_each_optimiser_step_and_training_moves_the_loss():
    _, seen, rows = run(items=range(5), accum=2, epochs=4, stats=("loss", "n"))
    assert len(seen) == 8 and len(rows) == 4  # 5 // 2 = 2 micro-batches per epoch (the 5th item dropped), 2 per step
    assert set(rows[0]) == {"step", "epoch", "loss", "n", "lr", "grad_norm", "skipped", "skipped_total"}
    assert all(r["n"] == 2.0 and r["skipped"] == 0 and r["grad_norm"] > 0 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[0]["lr"] == pytest.approx(0.1)  # no warm-up; then a cosine decay to 10%
    assert rows[-1]["lr"] < rows[0]["lr"]


def test_a_non_finite_loss_skips_the_step_and_too_many_stop_the_run():
    calls = []

    def flaky(m, chunk):
        calls.append(1)
        loss, st = mse(m, chunk)
        return (loss * float("nan"), st) if len(calls) == 2 else (loss, st)

    _, _, rows = run(loss=flaky)
    assert [r["skipped"] for r in rows] == [0, 1, 0, 0, 0, 0] and rows[-1]["skipped_total"] == 1
    assert math.isnan(rows[1]["loss"])  #: no good micro-batch in that step
    with pytest.raises(NonFiniteError, match="toy: 2 consecutive .*do this"):
        run(loss=lambda m, c: (mse(m, c)[0] * float("nan"), {}), max_skips=2, hint="do this")


def test_resume_from_a_checkpoint_gives_the_uninterrupted_run(tmp_path):
    for carry in (False, True):
        whole, _, rows = run(items=[(i, i) for i in range(6)], loss=lambda m, c: mse(m, [a for a, _ in c]),
                             carry_order=carry, epochs=3)
        acc = Accelerator(cpu=True)
        ckpt = Checkpoint(tmp_path / f"ck{carry}", 2, acc, "tag")

        def stop_at_5(row):
            if row["step"] == 5:
                raise KeyboardInterrupt

        model = toy()
        with pytest.raises(KeyboardInterrupt):  # the checkpoint of step 4 (in the second epoch) is kept
            fit(model, torch.optim.AdamW(model.parameters(), lr=0.1), [(i, i) for i in range(6)],
                lambda m, c: mse(m, [a for a, _ in c]), epochs=3, batch_size=2, lr=0.1, warmup_frac=0.0,
                accelerator=acc, rng=random.Random(0), log=stop_at_5, name="toy", kill_at="toy-step", hint="",
                carry_order=carry, order_key="items", ckpt=ckpt)
        resumed, _, tail = run(items=[(i, i) for i in range(6)], loss=lambda m, c: mse(m, [a for a, _ in c]),
                               carry_order=carry, epochs=3, order_key="items", ckpt=ckpt)
        assert [r["step"] for r in tail] == [5, 6, 7, 8, 9]
        assert tail == rows[4:]
        assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
