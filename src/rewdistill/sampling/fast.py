"""A fast sampler for Llama-family causal LMs (Llama, Mistral, Qwen2, Qwen3): HF's own modules, our decode loop.

Why it is faster than `model.generate` (benchmarks/sampling.py measures it):
- a pre-allocated KV cache written in place (HF's DynamicCache concatenates every step: O(length) copies);
- finished rows leave the batch (compacted once an eighth of the rows are done: rows still running past the new
  batch size move into the finished rows' places, so only they are copied), so few steps are spent on them;
- prompts are sorted by length before batching and pre-filled in groups padded to their own length;
- n samples of one prompt share one pass over the prompt (its cache is copied to the n rows);
- one additive mask per step, rotary tables computed once, one-kernel RMSNorm, logits only for the last
  position, no per-step logits processors, stopping criteria or output objects.
The layers' own modules (projections, MLP, rotary embedding) do the arithmetic, in the same order as HF,
so greedy outputs equal `generate`'s (tests/test_fast_sampler.py). Sampling draws from softmax(logits / T), as
`generate` does, by inverse CDF (`draw`: one uniform per row, not `torch.multinomial`'s exponential per vocabulary
entry) and on the rows still alive, so sampled texts differ from `generate`'s for the same seed (they follow the
same distribution). Other architectures use `generate` (sampling/hf.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rewdistill.models.family import RMS_NAMES, SUPPORTED, base_model, full_attention_family, supports  # noqa: F401


class Layer:
    """One decoder layer as the decode loop uses it: HF's own projection and MLP modules (so PEFT LoRA layers
    apply), the RMSNorms as one `F.rms_norm` kernel (bit-identical to HF's in float32). Fusing q/k/v and gate/up
    into one matmul each was tried: no gain on the tiny models, 5% slower on a 100M model."""

    def __init__(self, layer):
        self.attn, self.mlp = layer.self_attn, layer.mlp
        self.head_dim, self.scaling = self.attn.head_dim, self.attn.scaling
        self.n_q = self.attn.q_proj.out_features // self.head_dim
        self.n_kv = self.attn.k_proj.out_features // self.head_dim
        self.norm1 = self.rms(layer.input_layernorm)
        self.norm2 = self.rms(layer.post_attention_layernorm)

    @staticmethod
    def rms(norm):
        """F.rms_norm (one kernel instead of seven), else the module itself."""
        w = getattr(norm, "weight", None)
        eps = getattr(norm, "variance_epsilon", None)
        if w is None or eps is None or w.dtype != torch.float32 or type(norm).__name__ not in RMS_NAMES:
            return norm
        return lambda x: F.rms_norm(x, (w.shape[0],), w, eps)

    def qkv(self, x: torch.Tensor):
        """x (B, T, d) -> q (B, T, H, D), k, v (B, T, H_kv, D)."""
        a, shape = self.attn, (x.shape[0], x.shape[1], -1, self.head_dim)
        return a.q_proj(x).view(shape), a.k_proj(x).view(shape), a.v_proj(x).view(shape)


def additive(allowed: torch.Tensor) -> torch.Tensor:
    """Bool mask -> float mask (0 / -inf), built once per step: SDPA would convert a bool mask in every layer."""
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def draw(probs: torch.Tensor) -> torch.Tensor:
    """One token per row by inverse CDF: probs (b, V), rows summing to ~1 -> (b,) the first index whose running sum
    exceeds u x the row's sum, u uniform in [0, 1); a token of probability 0 is never drawn. The same distribution as
    `torch.multinomial(probs, 1)`, which on CPU draws an exponential per vocabulary entry (one uniform per row here).
    The running sum and u are float64: in float32 a large flat vocabulary's small probabilities come out coarsely
    rounded (at V = 150k, total variation ~1e-3 from the true distribution). Rows that are not a distribution (NaN,
    inf, negative or all-zero entries) raise, as multinomial does."""
    cdf = probs.double().cumsum(-1)  # (b, V)
    total = cdf[:, -1:]  # (b, 1)
    if not bool((torch.isfinite(total) & (total > 0)).all() and (probs >= 0).all()):
        raise RuntimeError("probability tensor contains either inf, nan or element < 0, or a row sums to 0 (a "
                           "diverged model: non-finite logits)")
    u = torch.rand(len(probs), 1, dtype=torch.float64, device=probs.device) * total  # (b, 1)
    tok = torch.searchsorted(cdf, u, right=True)[:, 0]  # (b,) cdf[tok - 1] <= u < cdf[tok]
    over = tok >= probs.shape[-1]  # u rounded up to the row's sum: its last token of non-zero probability
    if bool(over.any()):
        tok[over] = probs.shape[-1] - 1 - (probs[over].flip(-1) > 0).long().argmax(-1)
    return tok


def rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """HF's x*cos + rotate_half(x)*sin with rotate_half(x)*sin == roll(x, D/2)*[-sin1, sin2] (exact)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


class KVCache:
    """Per-layer key/value buffers (B, H_kv, L_max, D), written in place; `fill` compacts the batch."""

    def __init__(self, n_layers: int, B: int, H: int, L: int, D: int, dtype, device):
        # zeros, not empty: masked positions (left padding) are still multiplied by a zero weight, and 0 * NaN
        # garbage would be NaN. Columns past the prompt are written before they are read.
        self.k = [torch.zeros(B, H, L, D, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(B, H, L, D, dtype=dtype, device=device) for _ in range(n_layers)]

    def window(self, rows: slice, lo: int, hi: int) -> KVCache:
        """A view of rows `rows` and positions [lo, hi): writes through it land in these buffers."""
        view = KVCache.__new__(KVCache)
        view.k = [k[rows, :, lo:hi] for k in self.k]
        view.v = [v[rows, :, lo:hi] for v in self.v]
        return view

    def fill(self, holes: torch.Tensor, movers: torch.Tensor, n: int, used: int) -> None:
        """Keep the first `n` rows, row `movers[j]` (>= n) copied into row `holes[j]` (< n): only the rows that move
        are copied (`compaction`), the first `used` positions of each."""
        for buffers in (self.k, self.v):
            for i, buf in enumerate(buffers):
                buf[holes, :, :used] = buf[movers, :, :used]  # disjoint rows: the right side is gathered first
                buffers[i] = buf[:n]

    def expand(self, rows: torch.Tensor, used: int) -> None:
        """Fresh buffers of len(rows) rows, row j a copy of row rows[j] (a prompt's cache to its n samples); only the
        first `used` positions are copied."""
        for buffers in (self.k, self.v):
            for i, buf in enumerate(buffers):
                fresh = torch.empty((len(rows),) + buf.shape[1:], dtype=buf.dtype, device=buf.device)
                fresh[:, :, :used] = buf[rows, :, :used]
                buffers[i] = fresh


def compaction(done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which rows survive a compaction, and where: done (b,) bool -> (order (n,), holes (k,), movers (k,)), n the
    rows not done. order[j] is the row that buffer row j holds afterwards: a row not done among the first n stays
    where it is, and the k rows not done past n move into the k done rows among the first n (holes). Only the
    movers' caches are copied (KVCache.fill), not every surviving row's; rows change order, which the decode loop
    follows through `alive`."""
    n = int((~done).sum())
    holes = done[:n].nonzero()[:, 0]  # (k,) done rows among the first n
    movers = (~done[n:]).nonzero()[:, 0] + n  # (k,) rows not done past n: as many as there are holes
    order = torch.arange(n, device=done.device)
    order[holes] = movers
    return order, holes, movers


def attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float,
              repeat_heads: bool) -> torch.Tensor:
    """SDPA with grouped-query heads: q (B, H, T, D), keys / values (B, H_kv, S, D), mask (B, 1, T, S) -> (B, H, T, D).

    On CPU SDPA reads each key/value head for its group of query heads (`enable_gqa`): repeating them copied the
    whole cache every step. On CUDA a masked `enable_gqa` call runs only in SDPA's math kernel (transformers
    avoids it for that reason), so there the heads are repeated, as `repeat_kv` does."""
    groups = q.shape[1] // keys.shape[1]
    if groups > 1 and repeat_heads:
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale,
                                          enable_gqa=groups > 1 and not repeat_heads)


def forward_step(m, layers: list[Layer], h: torch.Tensor, cache: KVCache, start: int, cos: torch.Tensor,
                 sin_signed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run the decoder layers on new positions [start, start+T) and return the last position's final-normed
    hidden state.

    h: (B, T, d) embeddings; cos/sin_signed: (B, T, D); mask: (B, 1, T, start+T) additive (0 or -inf).
    """
    B, T, _ = h.shape
    end = start + T
    cos, sin_signed = cos.unsqueeze(2), sin_signed.unsqueeze(2)  # (B, T, 1, D)
    for i, lay in enumerate(layers):
        q, k, v = lay.qkv(lay.norm1(h))  # (B, T, H, D), (B, T, H_kv, D) x 2
        if hasattr(lay.attn, "q_norm"):  # Qwen3: per-head RMSNorm before rotary
            q, k = lay.attn.q_norm(q), lay.attn.k_norm(k)
        q = rope(q, cos, sin_signed).transpose(1, 2)  # (B, H, T, D)
        cache.k[i][:, :, start:end] = rope(k, cos, sin_signed).transpose(1, 2)
        cache.v[i][:, :, start:end] = v.transpose(1, 2)
        keys, values = cache.k[i][:, :, :end], cache.v[i][:, :, :end]  # (B, H_kv, end, D) views
        out = attention(q, keys, values, mask, lay.scaling, repeat_heads=h.device.type == "cuda")  # (B, H, T, D)
        h = h + lay.attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))
        h = h + lay.mlp(lay.norm2(h))
    return m.model.norm(h[:, -1])  # (B, d): only the last position is needed


def prefill(m, layers, prompts: list[list[int]], cache: KVCache, rows: slice, P: int, pad: int, cos_t,
            sin_t) -> torch.Tensor:
    """Run `prompts` (similar lengths) right-aligned at position P into cache rows `rows`; (b, d) last hidden."""
    device = cos_t.device
    W = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), W), pad, dtype=torch.long)  # (b, W) left-padded to this chunk's width
    valid = torch.zeros((len(prompts), W), dtype=torch.bool)
    for r, p in enumerate(prompts):
        ids[r, W - len(p) :] = torch.tensor(p, dtype=torch.long)
        valid[r, W - len(p) :] = True
    ids, valid = ids.to(device), valid.to(device)
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)  # (b, W) as generate's position ids
    causal = torch.ones(W, W, dtype=torch.bool, device=device).tril()
    eye = torch.eye(W, dtype=torch.bool, device=device)
    mask = additive((causal[None] & valid[:, None, :]) | eye[None])  # (b, W, W); pads see themselves (no NaN)
    h = m.model.embed_tokens(ids)  # (b, W, d)
    return forward_step(m, layers, h, cache.window(rows, P - W, P), 0, cos_t[pos], sin_t[pos], mask[:, None])


@torch.no_grad()
def decode_batch(model, prompts: list[list[int]], temperature: float, max_new_tokens: int, pad: int,
                 stop: list[int], n: int = 1, want_logprobs: bool = False, prefill_rows: int = 64):
    """Sample n responses to each prompt (rows r*n .. r*n+n-1 answer prompt r). Returns (tokens, finished,
    logprobs) per row: tokens[r] ends with its stop token when finished[r]; logprobs[r][t] is
    log softmax(logits / T)[token] (at T = 0, of the greedy token).

    Each prompt is run once and its cache copied to its n rows; prompts are pre-filled `prefill_rows` at a time,
    each group padded only to its own longest prompt (sort prompts by length for this to pay)."""
    m = base_model(model)
    device = next(m.parameters()).device
    U, P = len(prompts), max(len(p) for p in prompts)
    B, L = U * n, P + max_new_tokens
    cfg = m.config
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = m.model.layers[0].self_attn.head_dim
    probe = m.model.embed_tokens.weight[:1]
    cos_t, sin_t = m.model.rotary_emb(probe, torch.arange(L, device=device)[None])  # (1, L, D)
    half = head_dim // 2
    cos_t, sin_t = cos_t[0], torch.cat([-sin_t[0, :, :half], sin_t[0, :, half:]], -1)  # (L, D) every position
    layers = [Layer(layer) for layer in m.model.layers]
    cache = KVCache(len(m.model.layers), U, n_kv, L, head_dim, probe.dtype, device)
    h = torch.cat([prefill(m, layers, prompts[s : s + prefill_rows], cache, slice(s, s + prefill_rows), P, pad,
                           cos_t, sin_t)
                   for s in range(0, U, prefill_rows)])  # (U, d)
    valid = torch.zeros((U, L), dtype=torch.bool)  # (U, L) key positions holding real tokens
    for r, p in enumerate(prompts):
        valid[r, P - len(p) : P] = True
    valid = valid.to(device)
    next_pos = torch.tensor([len(p) for p in prompts], device=device)  # (U,)
    if n > 1:  # every prompt's cache, state and last hidden state to its n rows
        rows = torch.arange(U, device=device).repeat_interleave(n)
        cache.expand(rows, P)
        h, valid, next_pos = h[rows], valid[rows], next_pos[rows]

    stop_t = torch.tensor(stop, device=device)
    alive = torch.arange(B, device=device)  # (b,) original row of each buffer row
    out = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=device)  # (B, N)
    logps = torch.zeros((B, max_new_tokens), device=device) if want_logprobs else None
    length = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)  # (B,) tokens emitted
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (b,) buffer rows already finished
    neg = additive(valid)  # (b, L) 0 on real keys, -inf elsewhere; a column opens as its token is written
    for t in range(max_new_tokens):
        logits = m.lm_head(h).float()  # (b, V)
        scaled = logits / temperature if temperature else logits
        tok = scaled.argmax(-1) if temperature == 0 else draw(F.softmax(scaled, dim=-1))  # (b,)
        # every row of the batch writes; a finished row's writes land past its length and are never read
        out[alive, t] = tok
        if want_logprobs:
            logps[alive, t] = F.log_softmax(scaled, dim=-1).gather(1, tok[:, None])[:, 0]
        ends = torch.isin(tok, stop_t) & ~done
        if ends.any():
            length[alive[ends]] = t + 1
            finished[alive[ends]] = True
            done = done | ends
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if int(done.sum()) * 8 >= len(done):  # compact: finished rows would cost compute every step
            keep, holes, movers = compaction(done)
            cache.fill(holes, movers, len(keep), P + t)
            alive, neg, next_pos, tok, done = alive[keep], neg[keep], next_pos[keep], tok[keep], done[keep]
        col = P + t
        neg[:, col] = 0.0
        h = m.model.embed_tokens(tok[:, None])  # (b, 1, d)
        step_mask = neg[:, None, None, : col + 1]  # (b, 1, 1, col+1)
        h = forward_step(m, layers, h, cache, col, cos_t[next_pos][:, None], sin_t[next_pos][:, None], step_mask)
        next_pos = next_pos + 1
    out, length, finished = out.cpu(), length.cpu(), finished.cpu()
    tokens = [out[r, : length[r]].tolist() for r in range(B)]
    lps = [logps[r, : length[r]].tolist() for r in range(B)] if want_logprobs else None
    return tokens, finished.tolist(), lps
