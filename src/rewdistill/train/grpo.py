"""GRPO (Shao et al. 2024, DeepSeekMath): no critic; each response's advantage is its score normalised
within the group of responses to the same prompt, on every token; the KL to the reference is a loss
term (k3 estimator), not part of the reward."""
from __future__ import annotations

import torch

from rewdistill.algo.advantages import group_advantages
from rewdistill.train.rollout import Rollout

NEEDS_CRITIC = False
KL_IN_LOSS = True


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, group_size: int) -> torch.Tensor:
    """score: (B,) with B = N * group_size. Returns token advantages (B, T)."""
    adv = group_advantages(score.view(-1, group_size)).reshape(-1)  # (B,)
    return adv[:, None] * ro.resp_mask
