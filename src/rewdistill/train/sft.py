"""Supervised fine-tuning on (prompt, response) token pairs; loss on response tokens only."""
from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from rewdistill.models.forward import pad_right
from rewdistill.models.packed import pack_pairs, packed_logprobs
from rewdistill.models.suffix import suffix_logprobs, usable
from rewdistill.train.common import sft_batch
from rewdistill.train.loop import deterministic_if, fit


def sft_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with beta2 = 0.98, as every SFT run here uses it (the student's and the zoo's)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))


def weighted_token_mean(token_loss: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of per-token losses over the response tokens, each sequence's tokens counted `weight` times: equal to
    the plain token mean of a batch in which sequence i appears weights[i] times.
    token_loss (B, T), 0 where labels are -100; labels (B, T); weights (B,) -> scalar."""
    w = weights[:, None].float() * (labels != -100)  # (B, T)
    return (token_loss * w).sum() / w.sum()


def suffix_loss(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, device,
                weights: list[float] | None = None) -> torch.Tensor:
    """`sft_loss` on one process through `models.suffix` (the last layer and the head only where a response token is
    predicted): the same mean (or weighted mean) of the response tokens' cross-entropy, to float rounding."""
    ids, mask = pad_right([p + r for p, r in pairs], pad_id)  # (B, T) each
    starts = torch.tensor([len(p) for p, _ in pairs], device=device)  # (B,)
    lengths = torch.tensor([len(r) for _, r in pairs], device=device)  # (B,)
    logp, valid = suffix_logprobs(model, ids.to(device), mask.to(device), starts, lengths)  # (B, R) each
    w = valid.float() if weights is None else valid * torch.tensor(weights, device=device)[:, None].float()
    return -(logp * w).sum() / w.sum()


def sft_loss(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, device, accelerator=None,
             packed: bool = False, weights: list[float] | None = None, suffix: bool = False) -> torch.Tensor:
    """Mean cross-entropy over the response tokens of a batch of (prompt_ids, response_ids) pairs; `packed`: the
    responses to one prompt share a row and the prompt's computation (`models.packed`), same loss; `weights`: pair
    i counts as weights[i] copies of itself (`weighted_token_mean`; one process); `suffix`: through `suffix_loss`
    where `models.suffix.usable` says it applies (one process, a Llama-family model, non-empty prompts), else the
    model's forward.

    Over several processes each holds part of the batch: the loss is its token sum divided by the *global*
    token count (times the process count, which DDP's gradient average divides out), so every token weighs the
    same as on one process, however the tokens fall between processes."""
    if packed:
        logp = packed_logprobs(model, pack_pairs(pairs, pad_id).to(device))  # (N,) one per response token
        if accelerator is None or accelerator.num_processes == 1:
            return -logp.mean()
        n_global = accelerator.reduce(torch.tensor(float(len(logp)), device=device), "sum")
        return -logp.sum() / (n_global / accelerator.num_processes)
    one = accelerator is None or accelerator.num_processes == 1
    if suffix and one and all(p for p, _ in pairs) and usable(model):  # an empty prompt: nothing predicts token 0
        if accelerator is None:
            return suffix_loss(model, pairs, pad_id, device, weights)
        with accelerator.autocast():  # mixed precision as the prepared model's forward would run it
            return suffix_loss(model, pairs, pad_id, device, weights)
    ids, mask, labels = sft_batch(pairs, pad_id)  # (B, T) each; labels are -100 off the response
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    if weights is not None:  # one process (train_sft refuses more)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V) predicts ids[:, 1:]
        token_loss = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none")  # (B, T-1)
        return weighted_token_mean(token_loss, labels[:, 1:], torch.tensor(weights, device=device))
    if accelerator is None or accelerator.num_processes == 1:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    n_local = (labels[:, 1:] != -100).sum()  # tokens this process predicts (the model shifts labels by one)
    n_global = accelerator.reduce(n_local.clone(), "sum")
    per_process = n_global.float() / accelerator.num_processes
    return model(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=per_process).loss


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
    batching: str = "random",  # random: pairs drawn independently; length: similar lengths together
    #                            (`train.loop.length_grouped`); question: a prompt's responses together, packed
    weights: list[float] | None = None,  # per pair: how many copies of it the loss counts (sft.duplicates weight)
    compile: bool = False,  # torch.compile the forward and loss (sft.compile; `train.loop.compile_wanted`)
    suffix: bool = False,  # the loss through `models.suffix` where it applies (sft.forward suffix)
):
    """SFT with `train.loop.fit`; every epoch is a fresh shuffle of the pairs (`batching` length: batches of similar
    lengths, `train.loop.length_grouped`; question: of the prompts, each prompt's responses adjacent, so that a batch
    holds whole questions and packs them). Returns the prepared
    (possibly wrapped) model; save it with `save_pretrained`."""
    if batch_size % accelerator.num_processes:
        raise RuntimeError(f"sft.batch_size {batch_size} must be a multiple of the {accelerator.num_processes} "
                           "processes (each takes an equal share of every batch)")
    if weights is not None and accelerator.num_processes > 1:
        raise RuntimeError("sft.duplicates weight runs on one process; use keep or drop with several")
    if weights is not None and batching == "question":
        raise RuntimeError("sft.duplicates weight needs sft.batching random or length (packed batches take no weights)")
    if not pairs:
        raise RuntimeError("sft: no training pairs (no label-1 finished teacher response); sample more teacher "
                           "responses or lower pseudo_label.min_vote_share")

    def batch_loss(model, chunk: list[int]):  # chunk: indices into `pairs`
        w = [weights[i] for i in chunk] if weights is not None else None
        return sft_loss(model, [pairs[i] for i in chunk], pad_id, accelerator.device, accelerator, packed, w,
                        suffix), {}

    packed = batching == "question"
    group_of = (lambda i: tuple(pairs[i][0])) if packed else None  # pair index -> its prompt
    length_of = (lambda i: len(pairs[i][0]) + len(pairs[i][1])) if batching == "length" else None

    with deterministic_if(compile):  # compiled runs at 2 threads differed without it
        return fit(model, sft_optimizer(model, lr, weight_decay), list(range(len(pairs))), batch_loss,
                   epochs=epochs, batch_size=batch_size, lr=lr, warmup_frac=warmup_frac, accelerator=accelerator,
                   rng=random.Random(seed), log=log, name="sft", kill_at="sft-step",
                   hint="Lower sft.lr or check the data.", ckpt=ckpt, max_skips=max_skips,
                   group_of=group_of, length_of=length_of, compile=compile)
