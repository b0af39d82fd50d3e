"""Reward-model training, either kind (`models.reward`): pointwise BCE or pairwise Bradley-Terry on its score.

A likelihood reward model first gets its scale and bias from a logistic fit of the labels on its initial mean
log-probs (one forward pass, no grad), so that training starts from the init's own ranking, calibrated."""
from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable

import torch
from accelerate import Accelerator

from rewdistill.algo.losses import bce_reward_loss, bradley_terry_loss, fit_logistic
from rewdistill.models.packed import pack_pairs
from rewdistill.models.reward import batch_scores, is_likelihood, packed_scores, pair_batch, score_pairs
from rewdistill.train.common import full_state_dict, save_pretrained
from rewdistill.train.loop import fit

logger = logging.getLogger(__name__)


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


def batch_loss(model, rows: list[dict], chunk: list, loss: str, pad_id: int, device, packed: bool = False,
               suffix: bool = False):
    """Loss and stats of one micro-batch: `chunk` holds row indices (bce) or (chosen, rejected) pairs (bt);
    `packed`: the responses to one prompt share a row (`models.packed`), same scores; `suffix`: the scores
    through `models.suffix` where it applies (`models.reward.batch_scores`), same scores to rounding."""
    if loss == "bt":
        pairs = [rows[c]["pair"] for c, _ in chunk] + [rows[r]["pair"] for _, r in chunk]
    else:
        pairs = [rows[i]["pair"] for i in chunk]
    if packed:
        scores = packed_scores(model, pack_pairs(pairs, pad_id).to(device))  # (B,) or (2P,)
    else:
        ids, mask, resp = pair_batch(pairs, pad_id)  # (B, T), or (2P, T) for pairs
        scores = batch_scores(model, ids.to(device), mask.to(device), resp.to(device), suffix)  # (B,) or (2P,)
    if loss == "bt":
        return bradley_terry_loss(scores[: len(chunk)], scores[len(chunk) :])
    labels = torch.tensor([rows[i]["label"] for i in chunk], device=scores.device)
    return bce_reward_loss(scores, labels)


def calibrate(model, rows: list[dict], pad_id: int, rng: random.Random, n: int = 2048, suffix: bool = False,
              autocast=contextlib.nullcontext) -> None:
    """Set a likelihood reward model's scale and bias to the logistic fit of the labels on its mean log-probs, over
    `n` rows drawn at random (two parameters need few); scored as training scores them (`suffix`, the stage's
    `autocast`)."""
    sample = rng.sample(rows, min(n, len(rows)))
    with torch.no_grad():
        model.scale.fill_(1.0)
        model.bias.fill_(0.0)
        with autocast():
            x = torch.tensor(score_pairs(model, [r["pair"] for r in sample], pad_id, suffix=suffix))  # (n,)
        y = torch.tensor([float(r["label"]) for r in sample])
        a, b = fit_logistic(x, y)
        if a <= 0:  # the init ranks label-0 answers higher: start from its likelihood as it is (scale 1); training
            p = y.mean().clamp(0.01, 0.99).item()  # must then teach it the direction, never invert it
            a, b = 1.0, math.log(p / (1 - p)) - x.mean().item()
        model.scale.fill_(a)
        model.bias.fill_(b)
    logger.info(f"likelihood reward model calibrated on {len(sample)} responses: scale {a:.3f}, bias {b:.3f}")


def train_reward_model(
    model,
    rows: list[dict],  # each: {"qid", "pair": (prompt ids, response ids), "label": 0/1}
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
    batching: str = "random",  # random: items drawn independently; question: a question's items together, packed
    suffix: bool = False,  # the scores through `models.suffix` (reward_model.forward suffix)
):
    """Reward-model training with `train.loop.fit`: 5% warm-up; each epoch shuffles the previous epoch's item order
    again (`batching` question: shuffles the questions, each question's items adjacent, and packs the batches).
    Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    rng = random.Random(seed)
    if is_likelihood(model):
        calibrate(model, rows, pad_id, random.Random(seed + 1), suffix=suffix, autocast=accelerator.autocast)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    items = make_pairs(rows, rng) if loss == "bt" else list(range(len(rows)))  # bt draws its pairs from `rng` first
    if not items:
        raise ValueError("no reward-model training items: bt needs label-1 and label-0 responses to one question")
    if batch_size % accelerator.num_processes:
        raise RuntimeError(f"reward_model.batch_size {batch_size} must be a multiple of the "
                           f"{accelerator.num_processes} processes (each takes an equal share of every batch)")

    def loss_of(model, chunk: list):  # chunk: row indices (bce) or (chosen, rejected) pairs (bt)
        return batch_loss(model, rows, chunk, loss, pad_id, accelerator.device, packed, suffix)

    packed = batching == "question"
    group_of = None
    if packed:  # an item is a row index (bce) or a (chosen, rejected) pair of one question (bt)
        group_of = (lambda it: rows[it[0]]["qid"]) if loss == "bt" else (lambda i: rows[i]["qid"])

    return fit(model, opt, items, loss_of, epochs=epochs, batch_size=batch_size, lr=lr, warmup_frac=0.05,
               accelerator=accelerator, rng=rng, log=log, name="reward-model", kill_at="rm-step",
               hint="Lower reward_model.lr or check the labels.", stats=("loss", "acc"), carry_order=True,
               order_key="items", ckpt=ckpt, max_skips=max_skips, group_of=group_of)


def save_reward_model(accelerator: Accelerator, model, tokenizer, out_dir) -> None:
    """Save a trained reward model (possibly wrapped or sharded) as a plain HF directory: a scalar head as itself, a
    likelihood reward model as its causal LM, whose config carries kind, scale and bias (`LikelihoodRM.stamp`)."""
    if not is_likelihood(accelerator.unwrap_model(model)):
        return save_pretrained(accelerator, model, tokenizer, out_dir)
    whole = full_state_dict(accelerator, model)  # every process: under FSDP the wrapper's weights are sharded
    inner = accelerator.unwrap_model(model)
    inner.stamp(float(whole["scale"]), float(whole["bias"]))
    lm_state = {k.removeprefix("lm."): v for k, v in whole.items() if k.startswith("lm.")}
    save_pretrained(accelerator, inner.lm, tokenizer, out_dir, state=lm_state)
