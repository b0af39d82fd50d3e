"""Supervised fine-tuning on (prompt, response) token pairs; loss on response tokens only."""
from __future__ import annotations

import random
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.train.common import cosine_lr, sft_batch


def train_sft(
    model,
    pairs: list[tuple[list[int], list[int]]],
    pad_id: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    grad_accum: int,
    warmup_frac: float,
    weight_decay: float,
    accelerator: Accelerator,
    seed: int,
    log: Callable[[dict], None],
    desc: str = "sft",
):
    """Explicit SFT loop. Returns the (unwrapped) trained model."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    model, opt = accelerator.prepare(model, opt)
    steps_per_epoch = max(1, len(pairs) // (batch_size * grad_accum))
    total = steps_per_epoch * epochs
    warmup = int(warmup_frac * total)
    rng = random.Random(seed)
    model.train()
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not accelerator.is_main_process)
    for epoch in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = lr * cosine_lr(step, total, warmup)
            losses = []
            for m in range(grad_accum):
                lo = (s * grad_accum + m) * batch_size
                ids, mask, labels = sft_batch([pairs[i] for i in order[lo : lo + batch_size]], pad_id)
                ids, mask, labels = ids.to(accelerator.device), mask.to(accelerator.device), labels.to(accelerator.device)
                with accelerator.autocast():
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / grad_accum
                accelerator.backward(loss)
                losses.append(loss.item())
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            step += 1
            row = {"stage": desc, "step": step, "epoch": epoch, "loss": sum(losses), "lr": opt.param_groups[0]["lr"],
                   "grad_norm": float(grad_norm)}
            log(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            bar.update(1)
    bar.close()
    return accelerator.unwrap_model(model)
