"""PPO and reward-model math as pure functions on tensors. Imports torch only.

Conventions: `mask` is 1.0 on response tokens and 0.0 on padding; shapes are in the comments.
Every loss returns (loss, stats) where stats are detached floats for logging (torchtune style).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is 1. x, mask: (B, T)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; with shift_mean=False the mean is added back."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token KL(pi || ref) estimate from sampled tokens (Schulman's k1 / k3). (B, T) -> (B, T)."""
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k3":
        return torch.exp(-log_ratio) - 1 + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}")


def token_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token reward: -kl_coef * KL on every response token, plus `score` on the last one.

    score: (B,) terminal reward; kl, mask: (B, T). Returns (B, T).
    """
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)  # (B,) index of each row's last response token
    rewards[torch.arange(len(score)), last] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded responses.

    rewards, values, mask: (B, T). Returns (advantages, returns), both (B, T), zero on padding.
    """
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last_gae = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * mask[:, t]
        adv[:, t] = last_gae
    return adv, (adv + values) * mask


def masked_sum_over(x: torch.Tensor, mask: torch.Tensor, n_tokens: torch.Tensor | None) -> torch.Tensor:
    """masked_mean(x, mask), or the masked sum divided by `n_tokens` (a count shared by several processes)."""
    return masked_mean(x, mask) if n_tokens is None else (x * mask).sum() / n_tokens.clamp(min=1.0)


def ppo_policy_loss(logp, old_logp, advantages, mask, clip: float, n_tokens: torch.Tensor | None = None):
    """Clipped surrogate objective (Schulman et al. 2017), token-level mean (over `n_tokens` when given). All
    (B, T)."""
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_sum_over(torch.max(pg_loss1, pg_loss2), mask, n_tokens)
    with torch.no_grad():
        stats = {
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask).item(),  # k3 estimator
            "clipfrac": masked_mean((pg_loss2 > pg_loss1).float(), mask).item(),
        }
    return loss, stats


def ppo_value_loss(values, old_values, returns, mask, clip: float, n_tokens: torch.Tensor | None = None):
    """Clipped value loss: 0.5 * max((v - R)^2, (v_clipped - R)^2), token-level mean (over `n_tokens` when
    given). All (B, T)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    v_loss_unclipped = (values - returns) ** 2
    v_loss_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_sum_over(torch.max(v_loss_unclipped, v_loss_clipped), mask, n_tokens)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((v_loss_clipped > v_loss_unclipped).float(), mask).item()}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position. (B, T, V) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def bce_reward_loss(scores: torch.Tensor, labels: torch.Tensor):
    """Pointwise reward-model loss: binary cross-entropy of sigmoid(score) against 0/1 labels. (B,)."""
    loss = F.binary_cross_entropy_with_logits(scores, labels.float())
    with torch.no_grad():
        acc = ((scores > 0).float() == labels.float()).float().mean().item()
    return loss, {"acc": acc}


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor):
    """Pairwise reward-model loss: -log sigmoid(r_chosen - r_rejected) (Bradley & Terry 1952). (P,)."""
    margin = chosen - rejected
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        acc = (margin > 0).float().mean().item()
    return loss, {"acc": acc}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over the masked entries (1: the critic predicts the returns; <= 0:
    no better than a constant). values, returns, mask: (B, T)."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    diff = returns - values
    var_diff = masked_mean((diff - masked_mean(diff, mask)) ** 2, mask)
    return float("nan") if var_returns.item() == 0 else (1 - var_diff / var_returns).item()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, iters: int = 50, l2: float = 1e-4) -> tuple[float, float]:
    """(a, b) minimising the mean BCE of sigmoid(a * x + b) against 0/1 labels y (Newton's method, a small ridge
    on both). x, y: (N,). A one-feature logistic regression: calibrates a score into a reward-model logit."""
    X = torch.stack([x.double(), torch.ones_like(x, dtype=torch.float64)], 1)  # (N, 2)
    w = torch.zeros(2, dtype=torch.float64)
    y = y.double()
    for _ in range(iters):
        p = torch.sigmoid(X @ w)  # (N,)
        grad = X.T @ (p - y) / len(y) + l2 * w  # (2,)
        hess = (X.T * (p * (1 - p))) @ X / len(y) + l2 * torch.eye(2, dtype=torch.float64)  # (2, 2)
        step = torch.linalg.solve(hess, grad)
        w = w - step
        if step.abs().max() < 1e-10:
            break
    return float(w[0]), float(w[1])
