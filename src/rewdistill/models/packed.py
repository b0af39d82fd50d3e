"""Shared-prompt packing: the responses to one prompt in one row, the prompt's tokens computed once.

A batch of (prompt ids, response ids) pairs often holds several responses to the same prompt (the teacher's K
samples of a question). Instead of one right-padded row per pair,

    row:   p0 p1 p2 | a0 a1 a2 | b0 b1        (prompt p, responses a and b)
    pos:    0  1  2 |  3  4  5 |  3  4        (each response continues the prompt's positions)
    sees:  causal within the prompt; a response token sees the prompt and its own earlier tokens, never another
           response's

so every response token gets the same prediction as in its own padded row (up to floating-point summation order),
while the prompt's tokens are computed once per row instead of once per response. A 4-D boolean attention mask
carries the block structure (transformers passes 4-D masks through to the attention as they are).
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rewdistill.algo.losses import entropy_from_logits


@dataclass
class Packed:
    ids: torch.Tensor  # (R, T) token ids, right-padded
    pos: torch.Tensor  # (R, T) position ids
    mask: torch.Tensor  # (R, 1, T, T) bool: query t may attend to key s
    src: torch.Tensor  # (N,) flat index into (R * T) of the position whose logits predict each response token
    tgt: torch.Tensor  # (N,) the response tokens, in pair order
    seq: torch.Tensor  # (N,) index of the pair each response token belongs to
    last: torch.Tensor  # (n_pairs,) flat index into (R * T) of each pair's last token
    n_pairs: int

    def to(self, device) -> Packed:
        return Packed(self.ids.to(device), self.pos.to(device), self.mask.to(device), self.src.to(device),
                      self.tgt.to(device), self.seq.to(device), self.last.to(device), self.n_pairs)


def plan_rows(pairs: list[tuple[list[int], list[int]]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Group pair indices into rows: (prompt, [pair indices]) with one prompt per row, pairs in first-seen order; a
    row is closed when the next response would take it past `max_len` tokens (a row always takes one response)."""
    rows: list[tuple[list[int], list[int]]] = []
    open_row: dict[tuple, int] = {}  # prompt -> index of its open row in `rows`
    lengths: list[int] = []
    for i, (p, r) in enumerate(pairs):
        key = tuple(p)
        k = open_row.get(key)
        if k is None or lengths[k] + len(r) > max_len:
            open_row[key] = k = len(rows)
            rows.append((list(p), []))
            lengths.append(len(p))
        rows[k][1].append(i)
        lengths[k] += len(r)
    return rows


def pack_pairs(pairs: list[tuple[list[int], list[int]]], pad: int, max_len: int | None = None) -> Packed:
    """Pack (prompt ids, response ids) pairs with shared prompts (module docstring). Rows are capped at `max_len`
    tokens (default: twice the longest pair) so that attention over a row stays cheap; a prompt with more
    responses than fit gets several rows. Every prompt and every response must be non-empty.

    Token lists are built in Python, the (R, T, T) mask in a few tensor operations from each position's segment:
    0 for the prompt, k for the row's k-th response, a negative number of its own for each padding position."""
    if any(not p or not r for p, r in pairs):
        raise ValueError("pack_pairs: an empty prompt or response (nothing would predict its first token)")
    if max_len is None:
        max_len = 2 * max(len(p) + len(r) for p, r in pairs)
    plan = plan_rows(pairs, max_len)
    width = max(len(p) + sum(len(pairs[i][1]) for i in idx) for p, idx in plan)
    offset = [0] * len(pairs)  # where each pair's tokens start in the flat (N,) order (pair order)
    for i in range(1, len(pairs)):
        offset[i] = offset[i - 1] + len(pairs[i - 1][1])
    n_tok = offset[-1] + len(pairs[-1][1])
    src, tgt, seq, last = [0] * n_tok, [0] * n_tok, [0] * n_tok, [0] * len(pairs)
    ids, pos, seg = [], [], []  # (R * T,) flat, row after row
    for row, (p, idx) in enumerate(plan):
        n, base = len(p), row * width
        r_ids, r_pos, r_seg = list(p), list(range(n)), [0] * n
        at = n
        for k, i in enumerate(idx, start=1):
            r = pairs[i][1]
            m, o = len(r), offset[i]
            r_ids += r
            r_pos += range(n, n + m)
            r_seg += [k] * m
            # token t of the response is predicted at the prompt's last token (t = 0) or at token t - 1
            src[o : o + m] = [base + n - 1, *range(base + at, base + at + m - 1)]
            tgt[o : o + m] = r
            seq[o : o + m] = [i] * m
            last[i] = base + at + m - 1
            at += m
        fill = width - at
        ids += r_ids + [pad] * fill
        pos += r_pos + [0] * fill
        seg += r_seg + list(range(-at - 1, -width - 1, -1))  # padding: a segment of its own (-1 - position)
    shape = (len(plan), width)
    seg_t = longs(seg).view(shape)  # (R, T)
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # (T, T)
    key, query = seg_t[:, None, :], seg_t[:, :, None]  # (R, 1, T), (R, T, 1)
    # a real token sees the prompt and its own response, padding only itself (a query that sees nothing gives NaN)
    sees = causal & (((key == 0) & (query >= 0)) | (key == query))  # (R, T, T)
    return Packed(longs(ids).view(shape), longs(pos).view(shape), sees[:, None], longs(src), longs(tgt), longs(seq),
                  longs(last), len(pairs))


def longs(values: list[int]) -> torch.Tensor:
    """A non-empty flat list of ints as an int64 tensor (through `array`: several times faster than torch.tensor on a
    list). The tensor keeps the array alive and shares its memory; the array is reachable nowhere else."""
    return torch.frombuffer(array("q", values), dtype=torch.long)


def model_mask(model, allowed: torch.Tensor) -> torch.Tensor | None:
    """A boolean 4-D mask (query may attend to key) as `model`'s attention takes it: as it is for SDPA, additive (0
    or the dtype's minimum) for eager attention, which adds it to the scores; None for any other kernel (flash
    attention, flex, remote code), which does not apply a custom 4-D mask."""
    impl = getattr(getattr(model, "module", model).config, "_attn_implementation", None)
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed,
                                                                                           torch.finfo(dtype).min)
    return None


def block_mask(model, batch: Packed) -> torch.Tensor:
    """The batch's mask as `model`'s attention takes it (`model_mask`). Other kernels are refused, so that responses
    never silently see each other."""
    mask = model_mask(model, batch.mask)
    if mask is not None:
        return mask
    impl = getattr(getattr(model, "module", model).config, "_attn_implementation", None)
    raise ValueError(f"question batching needs the model's attention to be sdpa or eager (it is {impl}); set "
                     "sft.batching (random or length) / reward_model.batching / rl.batching to random")


def packed_logprobs(model, batch: Packed, temperature: float = 1.0, with_entropy: bool = False):
    """Log-prob of every response token of a packed batch given its prompt and its own earlier tokens: (N,); with
    `with_entropy` also the entropy of each token's distribution (N,). Logits are divided by `temperature`, as
    `models.forward.token_logprobs` does on padded rows."""
    logits = model(input_ids=batch.ids, attention_mask=block_mask(model, batch),
                   position_ids=batch.pos).logits  # (R, T, V)
    logits = logits.reshape(-1, logits.shape[-1])[batch.src].float() / temperature  # (N, V)
    logp = torch.gather(F.log_softmax(logits, -1), 1, batch.tgt[:, None]).squeeze(1)
    if not with_entropy:
        return logp
    return logp, entropy_from_logits(logits)


def to_padded(values: torch.Tensor, batch: Packed, width: int) -> torch.Tensor:
    """Per-token values (N,) in pair order back to right-padded rows, one per pair: (n_pairs, width), zero past each
    response's end (the layout of a rollout's response tensors)."""
    counts = torch.bincount(batch.seq, minlength=batch.n_pairs)  # (n_pairs,) tokens per pair
    starts = torch.cumsum(counts, 0) - counts  # (n_pairs,) where each pair's tokens begin in (N,)
    col = torch.arange(len(values), device=values.device) - starts[batch.seq]  # (N,) position within the response
    out = values.new_zeros(batch.n_pairs, width)
    out[batch.seq, col] = values
    return out


def packed_last_hidden(model, batch: Packed) -> torch.Tensor:
    """Final hidden state (after the last norm) at each pair's last token: (n_pairs, H). A sequence-classification
    model's head on it gives the pair's score, as on the pair's own padded row."""
    out = model(input_ids=batch.ids, attention_mask=block_mask(model, batch), position_ids=batch.pos,
                output_hidden_states=True)
    hidden = out.hidden_states[-1]  # (R, T, H)
    return hidden.reshape(-1, hidden.shape[-1])[batch.last]


def mean_per_pair(values: torch.Tensor, batch: Packed) -> torch.Tensor:
    """Mean of per-token values (N,) over each pair's response tokens: (n_pairs,)."""
    total = torch.zeros(batch.n_pairs, dtype=values.dtype, device=values.device).index_add(0, batch.seq, values)
    count = torch.zeros(batch.n_pairs, dtype=values.dtype, device=values.device).index_add(
        0, batch.seq, torch.ones_like(values))
    return total / count.clamp(min=1)
