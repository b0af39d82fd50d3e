"""Sampling with a local HF causal LM: prompts x (n, temperature) -> response texts.

Prompts are left-padded into batches; each batch gets its own seed so results do not depend on what
ran before. `temperature == 0` means greedy decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rewdistill.train.common import encode_prompt


@dataclass
class Generation:
    prompt_index: int
    temperature: float
    text: str  # decoded response, special tokens removed
    token_ids: list[int]  # response token ids (EOS included when the model stopped by itself)
    finished: bool  # False when cut by max_new_tokens


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the model's generation-config EOS ids (chat models
    often end a turn with a token of their own, e.g. Llama 3's <|eot_id|>)."""
    ids = [tokenizer.eos_token_id]
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for t in gen if isinstance(gen, list) else [gen]:
        if t is not None and t not in ids:
            ids.append(t)
    return ids


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    temperature: float,
    n: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    desc: str | None = None,
) -> list[Generation]:
    """`n` responses per prompt at one temperature, in prompt order (prompt 0's n first)."""
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    jobs = [i for i in range(len(prompts)) for _ in range(n)]  # (len(prompts) * n,) prompt index per row
    out: list[Generation] = []
    pad, eos = tokenizer.pad_token_id, stop_ids(model, tokenizer)
    bar = tqdm(total=len(jobs), desc=desc, disable=desc is None, unit="resp", leave=False)
    for b, start in enumerate(range(0, len(jobs), batch_size)):
        rows = jobs[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, P) left-padded prompts
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[r, width - len(encoded[i]) :] = 1
        torch.manual_seed(seed * 1_000_003 + b)
        kwargs = dict(do_sample=False) if temperature == 0 else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        seqs = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
            **kwargs,
        )[:, width:].cpu()  # (B, <= max_new_tokens) new tokens, padded after EOS
        for r, i in enumerate(rows):
            toks = seqs[r].tolist()
            ends = [k for k, t in enumerate(toks) if t in eos]
            finished = bool(ends)
            toks = toks[: ends[0] + 1] if finished else toks
            text = tokenizer.decode(toks, skip_special_tokens=True)
            out.append(Generation(i, temperature, text, toks, finished))
        bar.update(len(rows))
    bar.close()
    return out
