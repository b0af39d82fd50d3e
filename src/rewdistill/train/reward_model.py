"""Reward-model training: a scalar head on the SFT student, pointwise BCE or pairwise Bradley-Terry."""
from __future__ import annotations

import random
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.algo.losses import bce_reward_loss, bradley_terry_loss
from rewdistill.faults import kill_point
from rewdistill.train.common import all_agree, cosine_lr, global_mean, last_token_scores, pad_right, shard_of
from rewdistill.train.guard import Guard, all_finite


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
    """Explicit loop. Returns the prepared (possibly wrapped) model; save it with `save_pretrained`."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model, opt = accelerator.prepare(model, opt)
    items = make_pairs(rows, rng) if loss == "bt" else list(range(len(rows)))
    if not items:
        raise ValueError("no reward-model training items: bt needs label-1 and label-0 responses to one question")
    if batch_size % accelerator.num_processes:
        raise RuntimeError(f"reward_model.batch_size {batch_size} must be a multiple of the {accelerator.num_processes} "
                           "processes (each takes an equal share of every batch)")
    accum = accelerator.gradient_accumulation_steps
    micro_per_epoch = max(1, len(items) // batch_size)
    total = max(1, micro_per_epoch * epochs // accum)
    step, first_epoch, first_micro, window, bad = 0, 0, 0, [], False
    state = ckpt.load({"model": model}, {"opt": opt}) if ckpt else None
    if state:  # resume: same weights, optimiser, item order and position as when the checkpoint was written
        step, first_epoch, first_micro, items = state["step"], state["epoch"], state["next_micro"], state["items"]
        items = [tuple(i) if isinstance(i, list) else i for i in items]
        rng.setstate(state["rng"])
    guard = Guard("reward-model", max_skips, "Lower reward_model.lr or check the labels.")
    bar = tqdm(total=total, initial=step, desc="reward-model", unit="step", disable=not accelerator.is_main_process)
    model.train()
    for epoch in range(first_epoch, epochs):
        if epoch != first_epoch or not state:
            rng.shuffle(items)
        for s in range(first_micro if epoch == first_epoch else 0, micro_per_epoch):
            with accelerator.accumulate(model):
                mine = shard_of(items[s * batch_size : (s + 1) * batch_size], accelerator)  # this process's share
                with accelerator.autocast():
                    l, st = batch_loss(model, rows, mine, loss, pad_id, accelerator.device)
                if all_agree(accelerator, all_finite(l)):
                    accelerator.backward(l)
                    window.append({"loss": l.item(), **st})
                else:
                    bad = True
                if accelerator.sync_gradients:
                    for g in opt.param_groups:
                        g["lr"] = lr * cosine_lr(step, total, int(0.05 * total))
                    bad = bad or not all_finite(accelerator.clip_grad_norm_(model.parameters(), 1.0))
                    if not bad:
                        opt.step()
                    opt.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                guard.record(not bad)
                row = {"step": step, "epoch": epoch, "skipped": int(bad), "skipped_total": guard.skipped,
                       **({k: global_mean(accelerator, sum(w[k] for w in window) / len(window)) for k in window[0]}
                          if window else {"loss": float("nan"), "acc": float("nan")})}
                log(row)
                if ckpt and ckpt.due(step) and not bad:  # only good steps are checkpointed
                    ckpt.save(step, {"model": model}, {"opt": opt},
                              {"epoch": epoch, "next_micro": s + 1, "items": items, "rng": rng.getstate()})
                window, bad = [], False
                kill_point("rm-step")
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.2f}")
                bar.update(1)
    bar.close()
    return model


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
