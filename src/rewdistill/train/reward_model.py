"""Reward-model training: a scalar head on the SFT student, pointwise BCE or pairwise Bradley-Terry."""
from __future__ import annotations

import random
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.algo.losses import bce_reward_loss, bradley_terry_loss
from rewdistill.train.common import cosine_lr, last_token_scores, pad_right


def make_pairs(rows: list[dict], rng: random.Random) -> list[tuple[int, int]]:
    """Bradley-Terry pairs (index of a label-1 row, index of a label-0 row) of the same question.

    Each label-1 response is paired with one label-0 response of its question, chosen at random.
    """
    by_q: dict[str, tuple[list[int], list[int]]] = {}
    for i, r in enumerate(rows):
        by_q.setdefault(r["qid"], ([], []))[0 if r["label"] == 1 else 1].append(i)
    pairs = []
    for pos, neg in by_q.values():
        if neg:
            pairs += [(p, rng.choice(neg)) for p in pos]
    return pairs


def train_reward_model(
    model,
    rows: list[dict],  # each: {"qid", "ids": prompt+response token ids, "label": 0/1}
    pad_id: int,
    *,
    loss: str,
    epochs: int,
    lr: float,
    batch_size: int,
    grad_accum: int,
    accelerator: Accelerator,
    seed: int,
    log: Callable[[dict], None],
):
    """Explicit loop; `loss` is "bce" (pointwise) or "bt" (pairwise). Returns the unwrapped model."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model, opt = accelerator.prepare(model, opt)
    items = make_pairs(rows, rng) if loss == "bt" else list(range(len(rows)))
    if not items:
        raise ValueError("no training items for the reward model (bt needs label-1 and label-0 responses to one question)")
    steps_per_epoch = max(1, len(items) // (batch_size * grad_accum))
    total, step = steps_per_epoch * epochs, 0
    bar = tqdm(total=total, desc="reward-model", unit="step", disable=not accelerator.is_main_process)
    model.train()
    for epoch in range(epochs):
        rng.shuffle(items)
        for s in range(steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = lr * cosine_lr(step, total, int(0.05 * total))
            stats_sum, loss_sum = {}, 0.0
            for m in range(grad_accum):
                lo = (s * grad_accum + m) * batch_size
                chunk = items[lo : lo + batch_size]
                if loss == "bt":
                    seqs = [rows[c]["ids"] for c, _ in chunk] + [rows[r]["ids"] for _, r in chunk]
                else:
                    seqs = [rows[i]["ids"] for i in chunk]
                ids, mask = pad_right(seqs, pad_id)
                ids, mask = ids.to(accelerator.device), mask.to(accelerator.device)
                with accelerator.autocast():
                    scores = last_token_scores(model, ids, mask)  # (B,) or (2P,)
                if loss == "bt":
                    l, st = bradley_terry_loss(scores[: len(chunk)], scores[len(chunk) :])
                else:
                    labels = torch.tensor([rows[i]["label"] for i in chunk], device=scores.device)
                    l, st = bce_reward_loss(scores, labels)
                accelerator.backward(l / grad_accum)
                loss_sum += l.item() / grad_accum
                for k, v in st.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + v / grad_accum
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            step += 1
            log({"stage": "reward-model", "step": step, "epoch": epoch, "loss": loss_sum, **stats_sum})
            bar.set_postfix(loss=f"{loss_sum:.3f}", acc=f"{stats_sum.get('acc', 0):.2f}")
            bar.update(1)
    bar.close()
    return accelerator.unwrap_model(model)


@torch.no_grad()
def score_sequences(model, seqs: list[list[int]], pad_id: int, batch_size: int = 128) -> list[float]:
    """Reward-model logits for token sequences (prompt + response)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for lo in range(0, len(seqs), batch_size):
        ids, mask = pad_right(seqs[lo : lo + batch_size], pad_id)
        out += last_token_scores(model, ids.to(device), mask.to(device)).tolist()
    return out
