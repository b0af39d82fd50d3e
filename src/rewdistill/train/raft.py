"""RAFT (Dong et al. 2023, "Reward rAnked FineTuning"; online best-of-n expert iteration): each prompt's
highest-scoring response of its group gets advantage 1 on its tokens and the others 0, so the clipped update is a
likelihood step on the reward's pick of the student's own samples, nothing pushed down; no critic; the KL to the
reference is a loss term (k3), as in GRPO."""
from __future__ import annotations

import torch

from rewdistill.algo.advantages import best_of_group
from rewdistill.train.rollout import Advantages, Rollout

NEEDS_CRITIC = False
KL_IN_LOSS = True


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, kl: torch.Tensor, kl_coef: float, cfg, critic=None,
               dense: torch.Tensor | None = None) -> Advantages:
    """score: (B,) with B = N * group_size; kl unused (in the loss); dense: (B, T) per-token rewards, summed into
    the response's score before the pick."""
    if dense is not None:
        score = score + dense.sum(1)
    adv = best_of_group(score.view(-1, cfg.group_size)).reshape(-1)  # (B,) one 1 per group
    return Advantages(adv[:, None] * ro.resp_mask)  # (B, T)
