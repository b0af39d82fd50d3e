"""Pieces shared by the training loops: SFT batches, sharding over processes, schedules, saving."""
from __future__ import annotations

import math
import os

import torch

from rewdistill.models.forward import pad_right


def sft_batch(pairs: list[tuple[list[int], list[int]]], pad: int):
    """(prompt_ids, response_ids) pairs -> right-padded ids, mask and labels (-100 off the response)."""
    ids, mask = pad_right([p + r for p, r in pairs], pad)  # (B, T)
    labels = torch.full_like(ids, -100)
    for i, (p, r) in enumerate(pairs):
        labels[i, len(p) : len(p) + len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, mask, labels


def shard_of(items: list, accelerator, contiguous: bool = False) -> list:
    """This process's share of a global batch: every num_processes-th item, or (`contiguous`, for batches of whole
    questions, so that a question's responses stay on one process) an equal contiguous slice; all of it on one
    process."""
    n, i = accelerator.num_processes, accelerator.process_index
    if contiguous:
        k = len(items) // n
        return items[i * k : (i + 1) * k]
    return items[i::n]


def all_agree(accelerator, ok: bool) -> bool:
    """True only when `ok` holds on every process (so that all of them skip, or none: DDP needs both)."""
    if accelerator.num_processes == 1:
        return ok
    return bool(accelerator.gather(torch.tensor([float(ok)], device=accelerator.device)).min() > 0)


def global_mean(accelerator, value: float) -> float:
    """Mean of a per-process scalar over all processes (the value itself on one process)."""
    if accelerator.num_processes == 1:
        return value
    return accelerator.reduce(torch.tensor([value], device=accelerator.device), "mean").item()


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier for the base learning rate: linear warmup, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def full_state_dict(accelerator, model) -> dict:
    """The whole weights of a (possibly FSDP-sharded) model as plain tensors, on every process: under FSDP a
    collective (every process must call it), gathered with torch.distributed.checkpoint's documented API."""
    from rewdistill.launch import is_fsdp

    if not is_fsdp(accelerator):
        return accelerator.unwrap_model(model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


@torch.no_grad()
def refresh_whole(whole, sharded) -> None:
    """Copy an FSDP-sharded model's weights into an unsharded twin, one parameter at a time (every process: each
    `full_tensor` is an all-gather, in the same parameter order everywhere; at most one parameter is held twice)."""
    from torch.distributed.tensor import DTensor

    src = dict(sharded.named_parameters())
    for name, p in whole.named_parameters():
        q = src[name]
        p.copy_(q.full_tensor() if isinstance(q, DTensor) else q)


def save_pretrained(accelerator, model, tokenizer, out_dir, state: dict | None = None) -> None:
    """Save a (possibly wrapped / sharded) model and its tokenizer as a plain HF directory, once; written to
    `<out_dir>.tmp` first and renamed, so a directory under the final name is always complete. `state`: the
    whole weights to save, when the caller gathered them already (a part of a sharded wrapper)."""
    import shutil
    from pathlib import Path

    from rewdistill.launch import is_fsdp
    from rewdistill.train.lora import is_peft, merged_copy

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    accelerator.wait_for_everyone()
    inner = accelerator.unwrap_model(model)
    if is_peft(inner):  # LoRA: the adapter on its own, and the merged full model under the usual name
        whole = None  # under FSDP the gathered state (the caller's, if it gathered it already); every process
        if is_fsdp(accelerator):
            whole = state if state is not None else full_state_dict(accelerator, model)
        if accelerator.is_main_process:
            adapter = out_dir.with_name(out_dir.name + "_lora")
            shutil.rmtree(adapter, ignore_errors=True)
            inner.save_pretrained(adapter, state_dict=whole)
            tokenizer.save_pretrained(adapter)
        inner = merged_copy(inner, whole)
        state = inner.state_dict()
    elif state is None:
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:  # the state dict was gathered on every process (FSDP / ZeRO-3 need that)
        shutil.rmtree(tmp, ignore_errors=True)
        inner.save_pretrained(tmp, save_function=accelerator.save, state_dict=state)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    accelerator.wait_for_everyone()
