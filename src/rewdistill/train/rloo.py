"""RLOO (Kool et al. 2019; Ahmadian et al. 2024): REINFORCE with a leave-one-out baseline; no critic.

The sequence reward is the score minus `kl_coef` times the response's summed KL to the reference; each
response's baseline is the mean sequence reward of the other responses to its prompt.
"""
from __future__ import annotations

import torch

from rewdistill.algo.advantages import rloo_advantages
from rewdistill.train.rollout import Advantages, Rollout

NEEDS_CRITIC = False
KL_IN_LOSS = False


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, kl: torch.Tensor, kl_coef: float, cfg, critic=None,
               dense: torch.Tensor | None = None) -> Advantages:
    """score: (B,) with B = N * group_size; kl: (B, T) per-token KL to the reference (zero on padding); dense:
    (B, T) per-token rewards, summed into the sequence reward."""
    if dense is not None:
        score = score + dense.sum(1)
    seq_reward = score - kl_coef * kl.sum(1)  # (B,)
    adv = rloo_advantages(seq_reward.view(-1, cfg.group_size)).reshape(-1)  # (B,)
    return Advantages(adv[:, None] * ro.resp_mask)  # (B, T)
