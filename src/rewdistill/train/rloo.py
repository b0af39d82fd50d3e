"""RLOO (Kool et al. 2019; Ahmadian et al. 2024): REINFORCE with a leave-one-out baseline; no critic.

The sequence reward is the score minus `kl_coef` times the response's summed KL to the reference; each
response's baseline is the mean sequence reward of the other responses to its prompt.
"""
from __future__ import annotations

import torch

from rewdistill.algo.advantages import rloo_advantages
from rewdistill.algo.losses import kl_per_token
from rewdistill.train.rollout import Rollout

NEEDS_CRITIC = False
KL_IN_LOSS = False


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, group_size: int, kl_coef: float, estimator: str) -> torch.Tensor:
    """score: (B,) with B = N * group_size. Returns token advantages (B, T)."""
    kl = (kl_per_token(ro.logp, ro.ref_logp, estimator) * ro.resp_mask).sum(1)  # (B,)
    adv = rloo_advantages((score - kl_coef * kl).view(-1, group_size)).reshape(-1)  # (B,)
    return adv[:, None] * ro.resp_mask
