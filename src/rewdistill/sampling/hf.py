"""Sampling with a local HF causal LM: prompts x (n, temperature) -> response texts.

Two engines behind `generate`: "fast" (sampling/fast.py: our decode loop over the model's own modules, for
Llama / Mistral / Qwen2 / Qwen3; other models silently use "hf") and "hf" (`model.generate`). Each batch gets
its own seed so results do not depend on what ran before. `temperature == 0` means greedy decoding; greedy
outputs are the same with either engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rewdistill.models.prompt import PromptFormat
from rewdistill.sampling import fast


@dataclass
class Generation:
    prompt_index: int
    temperature: float
    text: str  # decoded response, special tokens removed
    token_ids: list[int]  # response token ids (EOS included when the model stopped by itself)
    finished: bool  # False when cut by max_new_tokens
    logprobs: list[float] | None = None  # per token log softmax(logits / T) (fast engine, when asked)


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
    fmt: PromptFormat,
    prompts: list[str],
    temperature: float,
    n: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    desc: str | None = None,
    engine: str = "fast",
    logprobs: bool = False,
) -> list[Generation]:
    """`n` responses per prompt at one temperature, in prompt order (prompt 0's n first)."""
    if engine == "fast" and fast.supports(model):
        return generate_fast(model, fmt, prompts, temperature, n, max_new_tokens, batch_size, seed, desc, logprobs)
    device = next(model.parameters()).device
    encoded = [fmt.prompt_ids(p) for p in prompts]
    jobs = [i for i in range(len(prompts)) for _ in range(n)]  # (len(prompts) * n,) prompt index per row
    out: list[Generation] = []
    pad, eos = fmt.pad_id, stop_ids(model, fmt.tokenizer)
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
        kwargs = (dict(do_sample=False) if temperature == 0
                  else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0))
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
            text = fmt.decode(toks)
            out.append(Generation(i, temperature, text, toks, finished))
        bar.update(len(rows))
    bar.close()
    return out


def generate_fast(model, fmt: PromptFormat, prompts, temperature, n, max_new_tokens, batch_size, seed, desc, logprobs):
    """`generate` on the fast engine: prompts sorted by length, each batch = whole prompts x n rows (a prompt's
    cache is computed once and shared by its n rows), one seed per batch."""
    encoded = [fmt.prompt_ids(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # length buckets: little padding
    per_row = min(n, batch_size)  # copies of a prompt in one batch
    per_batch = max(1, batch_size // per_row)  # prompts in one batch
    pad, eos = fmt.pad_id, stop_ids(model, fmt.tokenizer)
    found: dict[int, list[Generation]] = {i: [] for i in range(len(prompts))}
    bar = tqdm(total=len(prompts) * n, desc=desc, disable=desc is None, unit="resp", leave=False)
    b = 0
    for start in range(0, len(order), per_batch):
        group = order[start : start + per_batch]
        for first in range(0, n, per_row):
            k = min(per_row, n - first)  # this batch's copies of each prompt
            torch.manual_seed(seed * 1_000_003 + b)
            b += 1
            toks, fin, lps = fast.decode_batch(model, [encoded[i] for i in group], temperature, max_new_tokens, pad,
                                               eos, n=k, want_logprobs=logprobs)
            for r, (t, f) in enumerate(zip(toks, fin)):
                i = group[r // k]
                text = fmt.decode(t)
                found[i].append(Generation(i, temperature, text, t, f, lps[r] if logprobs else None))
            bar.update(len(toks))
    bar.close()
    return [g for i in range(len(prompts)) for g in found[i]]
