"""Supervised fine-tuning on (prompt, response) token pairs; loss on response tokens only."""
from __future__ import annotations

import random
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.faults import kill_point
from rewdistill.train.common import all_agree, cosine_lr, global_mean, sft_batch, shard_of
from rewdistill.train.guard import Guard, all_finite


def train_sft(
    model,
    pairs: list[tuple[list[int], list[int]]],
    pad_id: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup_frac: float,
    weight_decay: float,
    accelerator: Accelerator,  # carries device, mixed precision and gradient accumulation
    seed: int,
    log: Callable[[dict], None],
    ckpt=None,  # train.checkpoint.Checkpoint: resume from it, save to it every N steps
    max_skips: int = 10,
):
    """Explicit SFT loop. Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    if batch_size % accelerator.num_processes:
        raise RuntimeError(f"sft.batch_size {batch_size} must be a multiple of the {accelerator.num_processes} processes "
                           "(each takes an equal share of every batch)")
    if not pairs:
        raise RuntimeError("sft: no training pairs (no label-1 finished teacher response); sample more teacher "
                           "responses or lower pseudo_label.min_vote_share")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    model, opt = accelerator.prepare(model, opt)
    accum = accelerator.gradient_accumulation_steps
    micro_per_epoch = max(1, len(pairs) // batch_size)
    total = max(1, micro_per_epoch * epochs // accum)  # optimiser steps
    warmup = int(warmup_frac * total)
    rng = random.Random(seed)
    step, first_epoch, first_micro, order = 0, 0, 0, None
    state = ckpt.load({"model": model}, {"opt": opt}) if ckpt else None
    if state:  # resume: same weights, optimiser, shuffle order and position as when the checkpoint was written
        step, first_epoch, first_micro, order = state["step"], state["epoch"], state["next_micro"], state["order"]
        rng.setstate(state["rng"])
    guard = Guard("sft", max_skips, "Lower sft.lr or check the data.")
    model.train()
    losses, bad = [], False
    bar = tqdm(total=total, initial=step, desc="sft", unit="step", disable=not accelerator.is_main_process)
    for epoch in range(first_epoch, epochs):
        if epoch != first_epoch or order is None:
            order = list(range(len(pairs)))
            rng.shuffle(order)
        for s in range(first_micro if epoch == first_epoch else 0, micro_per_epoch):
            mine = shard_of(order[s * batch_size : (s + 1) * batch_size], accelerator)  # this process's share
            ids, mask, labels = sft_batch([pairs[i] for i in mine], pad_id)
            ids, mask, labels = ids.to(accelerator.device), mask.to(accelerator.device), labels.to(accelerator.device)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # mean over response tokens
                if all_agree(accelerator, all_finite(loss)):
                    accelerator.backward(loss)
                    losses.append(loss.item())
                else:
                    bad = True  # this optimiser step is skipped (its accumulated gradients dropped)
                if accelerator.sync_gradients:
                    for g in opt.param_groups:
                        g["lr"] = lr * cosine_lr(step, total, warmup)
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), 1.0) if not bad else float("nan")
                    bad = bad or not all_finite(grad_norm)
                    if not bad:
                        opt.step()
                    opt.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                guard.record(not bad)
                row = {"step": step, "epoch": epoch,
                       "loss": global_mean(accelerator, sum(losses) / len(losses) if losses else float("nan")),
                       "lr": opt.param_groups[0]["lr"], "grad_norm": float(grad_norm), "skipped": int(bad),
                       "skipped_total": guard.skipped}
                log(row)
                if ckpt and ckpt.due(step) and not bad:  # only good steps are checkpointed
                    ckpt.save(step, {"model": model}, {"opt": opt},
                              {"epoch": epoch, "next_micro": s + 1, "order": order, "rng": rng.getstate()})
                losses, bad = [], False
                kill_point("sft-step")
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                bar.update(1)
    bar.close()
    return model
