"""GRPO (Shao et al. 2024, DeepSeekMath): no critic; each response's advantage is its score normalised
within the group of responses to the same prompt, on every token; the KL to the reference is a loss
term (k3 estimator), not part of the reward."""
from __future__ import annotations

import torch

from rewdistill.algo.advantages import group_advantages
from rewdistill.train.rollout import Advantages, Rollout

NEEDS_CRITIC = False
KL_IN_LOSS = True


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, kl: torch.Tensor, kl_coef: float, cfg, critic=None,
               dense: torch.Tensor | None = None) -> Advantages:
    """score: (B,) with B = N * group_size; kl unused (GRPO puts the KL in the loss); dense: (B, T) per-token
    rewards, summed into the response's score before the group normalisation."""
    if dense is not None:
        score = score + dense.sum(1)
    adv = group_advantages(score.view(-1, cfg.group_size)).reshape(-1)  # (B,)
    return Advantages(adv[:, None] * ro.resp_mask)  # (B, T)
