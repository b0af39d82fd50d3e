"""Critic-free advantages (GRPO, RLOO) and the adaptive KL controller, as pure functions.

Group layout: the G responses to one prompt are adjacent, so a flat (N * G,) score vector reshapes to
(N, G) with `scores.view(-1, G)`.
"""
from __future__ import annotations

import torch


def group_advantages(scores: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024): each response's score minus its group's mean, divided by the group's std.

    scores: (N, G) -> (N, G). A group whose responses all score the same gets advantage 0.
    """
    centred = scores - scores.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (scores.std(dim=1, keepdim=True, unbiased=True) + eps)


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): score minus the mean of the *other* G-1 scores.

    scores: (N, G), G >= 2 -> (N, G). Equals G/(G-1) * (score - group mean).
    """
    G = scores.shape[1]
    if G < 2:
        raise ValueError("RLOO needs at least 2 responses per prompt (rl.group_size >= 2)")
    others_mean = (scores.sum(dim=1, keepdim=True) - scores) / (G - 1)
    return scores - others_mean


def best_of_group(scores: torch.Tensor) -> torch.Tensor:
    """RAFT / rejection-sampling fine-tuning (Dong et al. 2023): 1 for the highest score of each group (the first
    of equals), 0 for the others; a group whose responses all score the same has no best and gets 0 everywhere.
    scores: (N, G) -> (N, G)."""
    out = torch.zeros_like(scores)
    out.scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)
    tied = scores.max(dim=1, keepdim=True).values == scores.min(dim=1, keepdim=True).values  # (N, 1)
    return out * (~tied)


def mixed_groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Responses whose group's scores are not all equal (DAPO's dynamic-sampling filter, Yu et al. 2025): a group
    that all scores the same has zero group advantage and carries no signal. scores: (N * G,) -> (N * G,) bool."""
    s = scores.view(-1, group_size)  # (N, G)
    return (s.max(dim=1).values > s.min(dim=1).values).repeat_interleave(group_size)


def adaptive_kl_coef(coef: float, kl: float, target: float, horizon: int, n_steps: int = 1) -> float:
    """Ziegler et al. (2019) proportional controller: move the KL coefficient toward the target KL.

    error = clip(kl / target - 1, -0.2, 0.2); coef <- coef * (1 + error * n_steps / horizon).
    """
    error = min(0.2, max(-0.2, kl / target - 1.0))
    return coef * (1.0 + error * n_steps / horizon)
