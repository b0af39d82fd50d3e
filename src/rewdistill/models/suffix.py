"""Response-token log-probs with the last decoder layer run only where a response token is predicted.

SFT and the likelihood reward model need log p(response token | everything before it) on right-padded
prompt + response rows. The full forward computes every layer, the final norm and the LM head at every position,
but at a prompt position the last layer only has to supply keys and values: its query, attention output, MLP,
the final norm and the head there feed nothing the loss reads. So

    layers 0 .. L-2:  every position (HF's own decoder layers, the same call the model's forward makes)
    layer L-1:        keys / values at every position; query, attention, MLP only at the R positions
                      start-1 .. start+n-2 of each row (those that predict its response tokens)
    norm, head:       those R positions only

which on the tiny tasks (prompts ~70% of a sequence) skips about a third of the arithmetic. A scalar reward model
(a head on the last real token) needs the last layer at that one position only (`suffix_last_scores`). Every kept
position's prediction is the same function as in the full forward (tests/test_suffix_forward.py compares
them); summation order differs, so results agree to float rounding, not bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rewdistill.models.family import RMS_NAMES, base_model, supports
from rewdistill.models.packed import model_mask
from rewdistill.models.precision import sdpa


def usable(model, head: str = "lm_head") -> bool:
    """True when `hidden_at` reproduces `model`'s forward: a fast-sampler architecture (PEFT LoRA on it is fine) with
    SDPA or eager attention and no attention dropout while training, on one process, not wrapped by DDP or FSDP and
    not compiled; its head at `.<head>` (lm_head: `suffix_logprobs`; score: `suffix_last_scores`)."""
    if hasattr(model, "module") or hasattr(model, "_orig_mod"):  # DDP / FSDP 1 / torch.compile wrappers
        return False
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return False
    m = base_model(model)
    if type(m).__name__.startswith("FSDP"):  # FSDP 2 shards in place (class FSDP<Model>): its hooks need the root's
        return False  # forward
    if not supports(m, head):
        return False
    cfg = m.config
    if head == "score" and getattr(cfg, "num_labels", 1) != 1:  # suffix_last_scores reads one score per row
        return False
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if type(m.model.norm).__name__ not in RMS_NAMES:
        return False
    return not (model.training and getattr(cfg, "attention_dropout", 0.0))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's apply_rotary_pos_emb for one tensor: x (B, H, T, D), cos / sin (B, T, D)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def hidden_at(model, ids: torch.Tensor, mask: torch.Tensor, q_at: torch.Tensor) -> torch.Tensor:
    """The final-norm hidden states at positions q_at of right-padded rows, the last decoder layer run only there.

    ids, mask: (B, T); q_at: (B, R) positions in 0 .. T-1. Returns (B, R, d): what the model's forward gives at those
    positions (to float rounding), before its head."""
    m = base_model(model)
    inner = m.model
    B, T = ids.shape
    R = q_at.shape[1]
    device = ids.device
    pos = torch.arange(T, device=device).expand(B, T)  # (B, T) right padding: positions are the columns
    h = inner.embed_tokens(ids)  # (B, T, d)
    cos, sin = inner.rotary_emb(h, pos)  # (B, T, D)
    keys_ok = mask.bool()  # (B, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)
    attn_mask = model_mask(m, (causal[None] & keys_ok[:, None, :])[:, None])  # (B, 1, T, T); pads see real keys
    for layer in inner.layers[:-1]:
        h = layer(h, attention_mask=attn_mask, position_ids=pos, position_embeddings=(cos, sin))
        h = h[0] if isinstance(h, tuple) else h

    last = inner.layers[-1]
    a = last.self_attn
    D = a.head_dim
    x = last.input_layernorm(h)  # (B, T, d)
    x_q = x.gather(1, q_at[:, :, None].expand(B, R, x.shape[-1]))  # (B, R, d)
    q = a.q_proj(x_q).view(B, R, -1, D)  # (B, R, H, D)
    k = a.k_proj(x).view(B, T, -1, D)  # (B, T, H_kv, D)
    v = a.v_proj(x).view(B, T, -1, D).transpose(1, 2)  # (B, H_kv, T, D)
    if hasattr(a, "q_norm"):  # Qwen3: per-head RMSNorm before rotary
        q, k = a.q_norm(q), a.k_norm(k)
    cos_q = cos.gather(1, q_at[:, :, None].expand(B, R, cos.shape[-1]))  # (B, R, D)
    sin_q = sin.gather(1, q_at[:, :, None].expand(B, R, sin.shape[-1]))
    q = rotate(q.transpose(1, 2), cos_q, sin_q)  # (B, H, R, D)
    k = rotate(k.transpose(1, 2), cos, sin)  # (B, H_kv, T, D)
    sees = (torch.arange(T, device=device)[None, None] <= q_at[:, :, None]) & keys_ok[:, None, :]  # (B, R, T)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = sdpa(q, k, v, attn_mask=sees[:, None], scale=a.scaling)  # (B, H, R, D)
    h_q = h.gather(1, q_at[:, :, None].expand(B, R, h.shape[-1]))  # (B, R, d)
    h_q = h_q + a.o_proj(out.transpose(1, 2).reshape(B, R, -1))
    h_q = h_q + last.mlp(last.post_attention_layernorm(h_q))
    return inner.norm(h_q)  # (B, R, d)


def suffix_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, starts: torch.Tensor,
                    lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of each row's response tokens ids[b, starts[b] : starts[b] + lengths[b]].

    ids, mask: (B, T) right-padded; starts, lengths: (B,), starts >= 1 where lengths > 0. Returns (logp, valid),
    both (B, R) with R = max(lengths): logp[b, t] = log p(ids[b, starts[b] + t] | ids[b, :starts[b] + t]); valid
    marks t < lengths[b] (logp is 0 elsewhere)."""
    q_at, target, valid = response_positions(ids, starts, lengths)  # (B, R) each
    logits = base_model(model).lm_head(hidden_at(model, ids, mask, q_at)).float()  # (B, R, V)
    logp = torch.gather(F.log_softmax(logits, -1), 2, target[:, :, None]).squeeze(-1)  # (B, R)
    return logp * valid, valid


def response_positions(ids: torch.Tensor, starts: torch.Tensor,
                       lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For right-padded rows ids (B, T) whose responses are ids[b, starts[b] : starts[b] + lengths[b]]: the positions
    whose outputs predict the response tokens, those tokens, and which are real, each (B, R) with R = max(lengths)
    (q_at and target clamped into the row where t >= lengths[b])."""
    T = ids.shape[1]
    t = torch.arange(int(lengths.max()), device=ids.device)
    valid = t[None] < lengths[:, None]  # (B, R)
    q_at = (starts[:, None] - 1 + t[None]).clamp(0, T - 1)  # (B, R) positions whose output predicts a token
    return q_at, ids.gather(1, (q_at + 1).clamp(max=T - 1)), valid


def suffix_last_scores(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A sequence-classification model's score of each right-padded row at its last real token, the last decoder
    layer run only there (`models.forward.last_token_scores` to float rounding). (B, T) -> (B,)."""
    last = (mask.long().sum(1) - 1)[:, None]  # (B, 1)
    return base_model(model).score(hidden_at(model, ids, mask, last))[:, 0, 0].float()  # (B,)
