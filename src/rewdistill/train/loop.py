"""The optimiser-step skeleton of the supervised loops (SFT, reward model), written out once.

`fit` runs epochs over a shuffled list of items: each micro-batch's loss (the caller's `batch_loss`) is
accumulated under `accelerator.accumulate`; at every optimiser step the learning rate follows a cosine schedule,
the gradient norm is clipped to 1, and the step is skipped (and counted by the guard) when the loss or the norm
is not finite. One metrics row per optimiser step; a resumable checkpoint every N steps. A function, not a
Trainer: the caller builds the model, the optimiser and the items, and says what the loss of a micro-batch is.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Callable
from contextlib import contextmanager

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.faults import kill_point
from rewdistill.launch import sharding_note
from rewdistill.train.common import all_agree, cosine_lr, global_mean, shard_of
from rewdistill.train.guard import Guard, all_finite

logger = logging.getLogger("rewdistill")


def optimizer_step(accelerator: Accelerator, model, opt, lr: float, skip: bool = False) -> tuple[float, bool]:
    """One optimiser step on the accumulated gradients: set the learning rate, clip the gradient norm to 1.0,
    step unless `skip` (a non-finite loss) or the norm is not finite, then zero the gradients.

    Returns (gradient norm before clipping, NaN when skipped early; whether the step was skipped)."""
    for g in opt.param_groups:
        g["lr"] = lr
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), 1.0) if not skip else float("nan")
    skip = skip or not all_finite(grad_norm)
    if not skip:
        opt.step()
    opt.zero_grad()
    return grad_norm, skip


def compile_wanted(setting: str, accelerator: Accelerator) -> bool:
    """Whether to torch.compile a training forward: on / off as said; auto = one CPU process and a C++ compiler on
    PATH (inductor's CPU kernels are C++; on GPUs and under several processes it was not measured here)."""
    if setting != "auto":
        return setting == "on"
    compiler = os.environ.get("CXX") or "c++"
    has_cxx = any(shutil.which(c) for c in (compiler, "g++", "clang++"))
    return accelerator.device.type == "cpu" and accelerator.num_processes == 1 and has_cxx


@contextmanager
def deterministic_if(on: bool):
    """torch's deterministic algorithms while the block runs (inductor then compiles scatter-adds, such as an
    embedding's gradient, without atomics), the previous setting after."""
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def shuffled(items: list, rng: random.Random) -> list:
    rng.shuffle(items)
    return items


def length_grouped(items: list, length_of: Callable, batch_size: int, rng: random.Random, window: int = 4) -> list:
    """Items shuffled, then each run of `window` x batch_size sorted by length (longest first) and cut into batches,
    the epoch's whole batches in a random order, a last incomplete batch at the end (`fit` drops it): a batch is
    still a random draw, from a quarter of a random window instead of the whole set, and pads to a length close to
    its own (HF Trainer's group_by_length, with a smaller window)."""
    rng.shuffle(items)
    whole = len(items) - len(items) % batch_size
    batches = []
    for lo in range(0, whole, window * batch_size):
        run = sorted(items[lo : min(lo + window * batch_size, whole)], key=length_of, reverse=True)  # stable
        batches += [run[b : b + batch_size] for b in range(0, len(run), batch_size)]
    rng.shuffle(batches)
    return [i for b in batches for i in b] + items[whole:]


def grouped_shuffle(items: list, group_of: Callable, rng: random.Random) -> list:
    """Items in a random order of their groups, each group's items together and in a random order: batches cut
    from it hold whole groups (all the responses to a question) instead of items drawn independently."""
    groups: dict = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    keys = sorted(groups)  # a fixed order to shuffle, whatever order the items came in
    rng.shuffle(keys)
    out = []
    for k in keys:
        members = groups[k]
        rng.shuffle(members)
        out += members
    return out


def fit(
    model,
    opt,
    items: list,  # what a micro-batch is made of: indices, or (chosen, rejected) pairs, ...
    batch_loss: Callable,  # (model, chunk of items) -> (scalar loss tensor, {stat name: float})
    *,
    epochs: int,
    batch_size: int,  # items per micro-batch, over all processes
    lr: float,
    warmup_frac: float,  # share of the optimiser steps with a linear warm-up
    accelerator: Accelerator,  # carries device, mixed precision and gradient accumulation
    rng: random.Random,  # shuffles the items; its state is checkpointed
    log: Callable[[dict], None],
    name: str,  # in the progress bar and the guard's error
    kill_at: str,  # fault-injection point reached after every optimiser step (faults.kill_point)
    hint: str,  # what to do when the guard stops the run
    stats: tuple[str, ...] = ("loss",),  # row columns: "loss" and the keys of batch_loss's stats
    carry_order: bool = False,  # False: each epoch shuffles `items` afresh; True: it shuffles the last epoch's order
    order_key: str = "order",  # name of the epoch's item order in the checkpoint's loop state
    group_of: Callable | None = None,  # item -> group key: each epoch shuffles the groups, a group's items adjacent
    length_of: Callable | None = None,  # item -> its length: batches of similar lengths (`length_grouped`)
    ckpt=None,  # train.checkpoint.Checkpoint: resume from it, save to it every N steps
    max_skips: int = 10,
    compile: bool = False,  # torch.compile the forward passes of batch_loss (sft.compile)
):
    """Explicit loop. Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    model, opt = accelerator.prepare(model, opt)
    if note := sharding_note(accelerator, model, name):
        logger.info(note)
    accum = accelerator.gradient_accumulation_steps
    micro_per_epoch = max(1, len(items) // batch_size)  # a last incomplete micro-batch is dropped
    total = max(1, micro_per_epoch * epochs // accum)  # optimiser steps
    warmup = int(warmup_frac * total)
    step, first_epoch, first_micro, order = 0, 0, 0, None
    state = ckpt.load({"model": model}, {"opt": opt}) if ckpt else None
    if state:  # resume: same weights, optimiser, item order and position as when the checkpoint was written
        step, first_epoch, first_micro = state["step"], state["epoch"], state["next_micro"]
        order = [tuple(i) if isinstance(i, list) else i for i in state[order_key]]
        rng.setstate(state["rng"])
    guard = Guard(name, max_skips, hint)
    model.train()
    fwd = torch.compile(model, dynamic=True) if compile else model  # shares the weights; the loop steps `model`
    window, bad = [], False  # this optimiser step's good micro-batches ({"loss", **stats}); any skipped?
    bar = tqdm(total=total, initial=step, desc=name, unit="step", disable=not accelerator.is_main_process)
    for epoch in range(first_epoch, epochs):
        if epoch != first_epoch or order is None:  # a resumed epoch keeps the order it was saved with
            order = list(order if carry_order and order is not None else items)
            if group_of:
                order = grouped_shuffle(order, group_of, rng)
            elif length_of:
                order = length_grouped(order, length_of, batch_size, rng)
            else:
                order = shuffled(order, rng)
        for s in range(first_micro if epoch == first_epoch else 0, micro_per_epoch):
            chunk = shard_of(order[s * batch_size : (s + 1) * batch_size], accelerator, contiguous=group_of is not None)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, st = batch_loss(fwd, chunk)
                if all_agree(accelerator, all_finite(loss)):
                    accelerator.backward(loss)
                    window.append({"loss": loss.item(), **st})
                else:
                    bad = True  # this optimiser step is skipped (its accumulated gradients dropped)
                if accelerator.sync_gradients:
                    grad_norm, bad = optimizer_step(accelerator, model, opt, lr * cosine_lr(step, total, warmup), bad)
            if accelerator.sync_gradients:
                step += 1
                guard.record(not bad)
                means = {k: global_mean(accelerator, sum(w[k] for w in window) / len(window)) if window
                         else float("nan") for k in stats}
                row = {"step": step, "epoch": epoch, **means, "lr": opt.param_groups[0]["lr"],
                       "grad_norm": float(grad_norm), "skipped": int(bad), "skipped_total": guard.skipped}
                log(row)
                if ckpt and ckpt.due(step) and not bad:  # only good steps are checkpointed
                    ckpt.save(step, {"model": model}, {"opt": opt},
                              {"epoch": epoch, "next_micro": s + 1, order_key: order, "rng": rng.getstate()})
                window, bad = [], False
                kill_point(kill_at)
                bar.set_postfix({k: f"{means[k]:.3f}" for k in stats})
                bar.update(1)
    bar.close()
    return model
