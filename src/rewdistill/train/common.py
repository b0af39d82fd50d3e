"""Pieces shared by the training loops: batching token sequences, forward passes, schedules."""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F


def pad_right(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention_mask), both (B, T)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def uses_chat(tok) -> bool:
    """Whether prompts for this tokenizer are wrapped in its chat template (decided by `load_tokenizer`)."""
    return bool(getattr(tok, "rewdistill_chat", False))


def encode_prompt(tok, prompt: str) -> list[int]:
    """Prompt ids as the model sees them: the plain text, or a user turn of the chat template + generation prompt."""
    if uses_chat(tok):
        prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return tok(prompt, add_special_tokens=False)["input_ids"]


def encode_text_pair(tok, prompt: str, text: str) -> tuple[list[int], list[int]]:
    """Prompt ids, then response ids + EOS, tokenised apart (as the model sees them when it generates). Plain
    prompts: the response gets exactly one leading space; chat prompts: none (it starts the assistant turn); an empty
    response is EOS alone.
    Used wherever text from another model is scored or trained on."""
    body = text.strip() if uses_chat(tok) or not text.strip() else " " + text.lstrip()  # empty: just EOS
    return encode_prompt(tok, prompt), tok(body, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def sft_batch(pairs: list[tuple[list[int], list[int]]], pad: int):
    """(prompt_ids, response_ids) pairs -> right-padded ids, mask and labels (-100 off the response)."""
    ids, mask = pad_right([p + r for p, r in pairs], pad)  # (B, T)
    labels = torch.full_like(ids, -100)
    for i, (p, r) in enumerate(pairs):
        labels[i, len(p) : len(p) + len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, mask, labels


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` uses them. (B, T) -> (B, T)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model, ids, mask, start: int, temperature: float = 1.0, with_entropy: bool = False):
    """Log-probs of ids[:, start:] under `model` given everything before. ids, mask: (B, P+T) -> (B, T)."""
    keep = ids.shape[1] - start + 1  # the head runs only where it predicts a response token (and one more)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), logits_to_keep=keep).logits
    logits = logits[:, :-1].float() / temperature  # (B, T, V) predictions of ids[:, start:]
    logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, start:, None]).squeeze(-1)  # (B, T)
    if not with_entropy:
        return logp
    from rewdistill.algo.losses import entropy_from_logits

    return logp, entropy_from_logits(logits)


def token_scores(model, ids, mask) -> torch.Tensor:
    """Per-position scalar outputs of a sequence-classification model (its head on every hidden state).

    (B, T) -> (B, T). The reward model's score of a sequence is the value at its last real token.
    """
    # through the (possibly DDP-wrapped) model's own forward, so that gradient synchronisation sees it
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), output_hidden_states=True)
    head = getattr(model, "module", model).score
    return head(out.hidden_states[-1]).squeeze(-1).float()  # hidden_states[-1]: after the final norm


def shard_of(items: list, accelerator) -> list:
    """This process's share of a global batch: every num_processes-th item (all of it on one process)."""
    return items[accelerator.process_index :: accelerator.num_processes]


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


def last_token_scores(model, ids, mask) -> torch.Tensor:
    """Score of each right-padded sequence at its last real token. (B, T) -> (B,)."""
    scores = token_scores(model, ids, mask)  # (B, T)
    last = mask.long().sum(1) - 1  # (B,)
    return scores[torch.arange(len(ids)), last]


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier for the base learning rate: linear warmup, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save_pretrained(accelerator, model, tokenizer, out_dir) -> None:
    """Save a (possibly wrapped / sharded) model and its tokenizer as a plain HF directory, once; written to
    `<out_dir>.tmp` first and renamed, so a directory under the final name is always complete."""
    import shutil
    from pathlib import Path

    from rewdistill.train.lora import is_peft, merged_copy

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    accelerator.wait_for_everyone()
    inner = accelerator.unwrap_model(model)
    if is_peft(inner):  # LoRA: the adapter on its own, and the merged full model under the usual name
        if accelerator.is_main_process:
            adapter = out_dir.with_name(out_dir.name + "_lora")
            shutil.rmtree(adapter, ignore_errors=True)
            inner.save_pretrained(adapter)
            tokenizer.save_pretrained(adapter)
        inner = merged_copy(inner)
        state = inner.state_dict()
    else:
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:  # the state dict was gathered on every process (FSDP / ZeRO-3 need that)
        shutil.rmtree(tmp, ignore_errors=True)
        inner.save_pretrained(tmp, save_function=accelerator.save, state_dict=state)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    accelerator.wait_for_everyone()
