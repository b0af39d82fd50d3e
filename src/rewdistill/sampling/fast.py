"""A fast sampler for Llama-family causal LMs (Llama, Mistral, Qwen2, Qwen3): HF's own modules, our decode loop.

Why it is faster than `model.generate` (benchmarks/sampling.py measures it):
- a pre-allocated KV cache written in place (HF's DynamicCache concatenates every step: O(length) copies);
- finished rows leave the batch (compacted when a quarter of the rows are done), so no step is spent on them;
- prompts are sorted by length before batching, so little attention is spent on padding;
- one mask per step, rotary tables computed once, logits only for the last position, no per-step
  processors, stopping criteria or output objects.
The layers' own modules (norms, projections, MLP, rotary embedding) do the arithmetic, in the same order as HF,
so greedy outputs equal `generate`'s (tests/test_fast_sampler.py). Sampling draws from softmax(logits / T) with
`torch.multinomial`, as `generate` does, but on the rows still alive, so sampled texts differ from `generate`'s
for the same seed (they follow the same distribution). Other architectures use `generate` (sampling/hf.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


def base_model(model):
    """The HF *ForCausalLM under a PEFT wrapper (LoRA layers stay in place and are applied by the modules)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports(model) -> bool:
    """True when the fast path reproduces this model's forward: a supported type, full attention, no bias tricks."""
    m = base_model(model)
    cfg = getattr(m, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in SUPPORTED:
        return False
    if getattr(cfg, "use_sliding_window", False) or (cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None)):
        return False
    layers = getattr(getattr(m, "model", None), "layers", None)
    if not layers or not hasattr(m.model, "rotary_emb") or not hasattr(m, "lm_head"):
        return False
    types = getattr(cfg, "layer_types", None)
    return not types or all(t == "full_attention" for t in types)


class Layer:
    """One decoder layer's weights for the decode loop: q/k/v and gate/up fused into one matmul each when the
    projections are plain `nn.Linear` (concatenated once per `decode_batch`), the modules themselves otherwise
    (e.g. PEFT LoRA layers). Same products as HF's separate matmuls (checked bit for bit by the tests)."""

    def __init__(self, layer, act: str):
        attn, mlp = layer.self_attn, layer.mlp
        self.attn, self.mlp, self.layer = attn, mlp, layer
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.n_q = attn.q_proj.out_features // attn.head_dim
        self.n_kv = attn.k_proj.out_features // attn.head_dim
        linears = (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj)
        self.fused = all(type(x) is nn.Linear for x in linears) and act == "silu" and mlp.down_proj.bias is None
        if self.fused:
            qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
            self.qkv_w = torch.cat([x.weight for x in qkv])  # (H*D + 2*H_kv*D, d)
            self.qkv_b = torch.cat([x.bias for x in qkv]) if attn.q_proj.bias is not None else None
            self.gu_w = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])  # (2*I, d)
            self.gu_b = torch.cat([mlp.gate_proj.bias, mlp.up_proj.bias]) if mlp.gate_proj.bias is not None else None
        self.norm1 = self.rms(layer.input_layernorm)
        self.norm2 = self.rms(layer.post_attention_layernorm)

    @staticmethod
    def rms(norm):
        """F.rms_norm (one kernel, bit-identical to HF's RMSNorm in float32), else the module itself."""
        w = getattr(norm, "weight", None)
        eps = getattr(norm, "variance_epsilon", None)
        if w is None or eps is None or w.dtype != torch.float32 or type(norm).__name__ not in RMS_NAMES:
            return norm
        return lambda x: F.rms_norm(x, (w.shape[0],), w, eps)

    def qkv(self, x: torch.Tensor):
        """x (B, T, d) -> q (B, T, H, D), k, v (B, T, H_kv, D)."""
        B, T, _ = x.shape
        if self.fused:
            y = F.linear(x, self.qkv_w, self.qkv_b).view(B, T, self.n_q + 2 * self.n_kv, self.head_dim)
            return y[:, :, : self.n_q], y[:, :, self.n_q : self.n_q + self.n_kv], y[:, :, self.n_q + self.n_kv :]
        a = self.attn
        shape = (B, T, -1, self.head_dim)
        return a.q_proj(x).view(shape), a.k_proj(x).view(shape), a.v_proj(x).view(shape)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            gate, up = F.linear(x, self.gu_w, self.gu_b).chunk(2, dim=-1)
            return self.mlp.down_proj(F.silu(gate) * up)
        return self.mlp(x)


RMS_NAMES = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")


def additive(allowed: torch.Tensor) -> torch.Tensor:
    """Bool mask -> float mask (0 / -inf), built once per step: SDPA would convert a bool mask in every layer."""
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """HF's x*cos + rotate_half(x)*sin with rotate_half(x)*sin == roll(x, D/2)*[-sin1, sin2] (exact)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


class KVCache:
    """Per-layer key/value buffers (B, H_kv, L_max, D), written in place; `keep` compacts the batch."""

    def __init__(self, n_layers: int, B: int, H: int, L: int, D: int, dtype, device):
        self.k = [torch.empty(B, H, L, D, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.empty(B, H, L, D, dtype=dtype, device=device) for _ in range(n_layers)]

    def keep(self, rows: torch.Tensor, used: int) -> None:
        """Keep only `rows` (indices into the current batch); only the first `used` positions are copied."""
        for buffers in (self.k, self.v):
            for i, buf in enumerate(buffers):
                fresh = torch.empty((len(rows),) + buf.shape[1:], dtype=buf.dtype, device=buf.device)
                fresh[:, :, :used] = buf[rows, :, :used]
                buffers[i] = fresh


def forward_step(m, layers: list[Layer], h: torch.Tensor, cache: KVCache, start: int, cos: torch.Tensor,
                 sin_signed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run the decoder layers on new positions [start, start+T) and return the last position's final-normed hidden state.

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
        groups = lay.n_q // lay.n_kv
        if groups > 1:
            keys = keys[:, :, None].expand(-1, -1, groups, -1, -1).reshape(B, lay.n_q, end, -1)
            values = values[:, :, None].expand(-1, -1, groups, -1, -1).reshape(B, lay.n_q, end, -1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=lay.scaling)  # (B, H, T, D)
        h = h + lay.attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))
        h = h + lay.ffn(lay.norm2(h))
    return m.model.norm(h[:, -1])  # (B, d): only the last position is needed


def prefill(m, layers, prompts: list[list[int]], cache: KVCache, rows: slice, P: int, pad: int, cos_t, sin_t) -> torch.Tensor:
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
    view = KVCache.__new__(KVCache)  # this chunk's rows and columns [P - W, P) of the shared buffers
    view.k = [k[rows, :, P - W : P] for k in cache.k]
    view.v = [v[rows, :, P - W : P] for v in cache.v]
    h = m.model.embed_tokens(ids)  # (b, W, d)
    return forward_step(m, layers, h, view, 0, cos_t[pos], sin_t[pos], mask[:, None])


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
    layers = [Layer(layer, getattr(cfg, "hidden_act", "")) for layer in m.model.layers]
    cache = KVCache(len(m.model.layers), U, n_kv, L, head_dim, probe.dtype, device)
    h = torch.cat([prefill(m, layers, prompts[s : s + prefill_rows], cache, slice(s, s + prefill_rows), P, pad, cos_t, sin_t)
                   for s in range(0, U, prefill_rows)])  # (U, d)
    valid = torch.zeros((U, L), dtype=torch.bool)  # (U, L) key positions holding real tokens
    for r, p in enumerate(prompts):
        valid[r, P - len(p) : P] = True
    valid = valid.to(device)
    next_pos = torch.tensor([len(p) for p in prompts], device=device)  # (U,)
    if n > 1:  # every prompt's cache, state and last hidden state to its n rows
        rows = torch.arange(U, device=device).repeat_interleave(n)
        cache.keep(rows, P)
        h, valid, next_pos = h[rows], valid[rows], next_pos[rows]

    stop_t = torch.tensor(stop, device=device)
    alive = torch.arange(B, device=device)  # (b,) original row of each buffer row
    out = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=device)  # (B, N)
    logps = torch.zeros((B, max_new_tokens), device=device) if want_logprobs else None
    length = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)  # (B,) tokens emitted
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (b,) buffer rows already finished
    for t in range(max_new_tokens):
        logits = m.lm_head(h).float()  # (b, V)
        if temperature == 0:
            tok = logits.argmax(-1)
        else:
            tok = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1)[:, 0]
        if want_logprobs:
            lp = F.log_softmax(logits / (temperature or 1.0), dim=-1).gather(1, tok[:, None])[:, 0]
            logps[alive[~done], t] = lp[~done]
        out[alive[~done], t] = tok[~done]
        ends = torch.isin(tok, stop_t) & ~done
        if ends.any():
            length[alive[ends]] = t + 1
            finished[alive[ends]] = True
            done = done | ends
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if int(done.sum()) * 8 >= len(done):  # compact: finished rows would cost compute every step
            keep = (~done).nonzero()[:, 0]
            cache.keep(keep, P + t)
            alive, valid, next_pos, tok, done = alive[keep], valid[keep], next_pos[keep], tok[keep], done[keep]
        col = P + t
        valid[:, col] = True
        h = m.model.embed_tokens(tok[:, None])  # (b, 1, d)
        step_mask = additive(valid[:, None, None, : col + 1])  # (b, 1, 1, col+1)
        h = forward_step(m, layers, h, cache, col, cos_t[next_pos][:, None], sin_t[next_pos][:, None], step_mask)
        next_pos = next_pos + 1
    out, length, finished = out.cpu(), length.cpu(), finished.cpu()
    tokens = [out[r, : length[r]].tolist() for r in range(B)]
    lps = [logps[r, : length[r]].tolist() for r in range(B)] if want_logprobs else None
    return tokens, finished.tolist(), lps
