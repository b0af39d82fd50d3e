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
    warmup_frac: float,
    weight_decay: float,
    accelerator: Accelerator,  # carries device, mixed precision and gradient accumulation
    seed: int,
    log: Callable[[dict], None],
):
    """Explicit SFT loop. Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    model, opt = accelerator.prepare(model, opt)
    accum = accelerator.gradient_accumulation_steps
    micro_per_epoch = max(1, len(pairs) // batch_size)
    total = max(1, micro_per_epoch * epochs // accum)  # optimiser steps
    warmup = int(warmup_frac * total)
    rng = random.Random(seed)
    model.train()
    step, losses = 0, []
    bar = tqdm(total=total, desc="sft", unit="step", disable=not accelerator.is_main_process)
    for epoch in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for s in range(micro_per_epoch):
            ids, mask, labels = sft_batch([pairs[i] for i in order[s * batch_size : (s + 1) * batch_size]], pad_id)
            ids, mask, labels = ids.to(accelerator.device), mask.to(accelerator.device), labels.to(accelerator.device)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # mean over response tokens
                accelerator.backward(loss)
                losses.append(loss.item())
                if accelerator.sync_gradients:
                    for g in opt.param_groups:
                        g["lr"] = lr * cosine_lr(step, total, warmup)
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()  # a no-op on accumulation micro-steps (accelerate)
                opt.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                row = {"step": step, "epoch": epoch, "loss": sum(losses) / len(losses),
                       "lr": opt.param_groups[0]["lr"], "grad_norm": float(grad_norm)}
                losses = []
                log(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                bar.update(1)
    bar.close()
    return model
