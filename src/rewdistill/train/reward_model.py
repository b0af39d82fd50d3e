"""Reward-model training: a scalar head on the SFT student, pointwise BCE or pairwise Bradley-Terry."""
from __future__ import annotations

import random
from collections.abc import Callable

import torch
from accelerate import Accelerator

from rewdistill.algo.losses import bce_reward_loss, bradley_terry_loss
from rewdistill.models.forward import last_token_scores, pad_right
from rewdistill.train.loop import fit


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


def batch_loss(model, rows: list[dict], chunk: list, loss: str, pad_id: int, device):
    """Loss and stats of one micro-batch: `chunk` holds row indices (bce) or (chosen, rejected) pairs (bt)."""
    if loss == "bt":
        seqs = [rows[c]["ids"] for c, _ in chunk] + [rows[r]["ids"] for _, r in chunk]
    else:
        seqs = [rows[i]["ids"] for i in chunk]
    ids, mask = pad_right(seqs, pad_id)  # (B, T), or (2P, T) for pairs
    scores = last_token_scores(model, ids.to(device), mask.to(device))  # (B,) or (2P,)
    if loss == "bt":
        return bradley_terry_loss(scores[: len(chunk)], scores[len(chunk) :])
    labels = torch.tensor([rows[i]["label"] for i in chunk], device=scores.device)
    return bce_reward_loss(scores, labels)


def train_reward_model(
    model,
    rows: list[dict],  # each: {"qid", "ids": prompt+response token ids, "label": 0/1}
    pad_id: int,
    *,
    loss: str,  # "bce" (pointwise) or "bt" (pairwise Bradley-Terry)
    epochs: int,
    lr: float,
    batch_size: int,
    accelerator: Accelerator,
    seed: int,
    log: Callable[[dict], None],
    ckpt=None,  # train.checkpoint.Checkpoint: resume from it, save to it every N steps
    max_skips: int = 10,
):
    """Reward-model training with `train.loop.fit`: 5% warm-up; each epoch shuffles the previous epoch's item order
    again. Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    items = make_pairs(rows, rng) if loss == "bt" else list(range(len(rows)))  # bt draws its pairs from `rng` first
    if not items:
        raise ValueError("no reward-model training items: bt needs label-1 and label-0 responses to one question")
    if batch_size % accelerator.num_processes:
        raise RuntimeError(f"reward_model.batch_size {batch_size} must be a multiple of the "
                           f"{accelerator.num_processes} processes (each takes an equal share of every batch)")

    def loss_of(model, chunk: list):  # chunk: row indices (bce) or (chosen, rejected) pairs (bt)
        return batch_loss(model, rows, chunk, loss, pad_id, accelerator.device)

    return fit(model, opt, items, loss_of, epochs=epochs, batch_size=batch_size, lr=lr, warmup_frac=0.05,
               accelerator=accelerator, rng=rng, log=log, name="reward-model", kill_at="rm-step",
               hint="Lower reward_model.lr or check the labels.", stats=("loss", "acc"), carry_order=True,
               order_key="items", ckpt=ckpt, max_skips=max_skips)
