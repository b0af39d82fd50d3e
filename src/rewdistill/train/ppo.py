"""PPO advantages (Schulman et al. 2017) as used in RLHF (Ziegler et al. 2019; Ouyang et al. 2022).

The episode is one response: the terminal score arrives at the last token, every token pays
`kl_coef * KL(pi || ref)`, a critic (initialised from the reward model) gives values for GAE, and the
advantages are whitened over the rollout.
"""
from __future__ import annotations

import torch

from rewdistill.algo.losses import gae, masked_whiten, token_rewards
from rewdistill.models.forward import token_scores
from rewdistill.train.rollout import Advantages, Rollout

NEEDS_CRITIC = True
KL_IN_LOSS = False


@torch.no_grad()
def advantages(ro: Rollout, score: torch.Tensor, kl: torch.Tensor, kl_coef: float, cfg, critic,
               dense: torch.Tensor | None = None) -> Advantages:
    """score: (B,) terminal rewards; kl: (B, T) per-token KL to the reference (zero on padding); dense: (B, T)
    per-token rewards (teacher-kl), added where they arise, so GAE credits each token."""
    m = ro.resp_mask
    if cfg.whiten_rewards:
        score = (score - score.mean()) / (score.std() + 1e-6) if len(score) > 1 else score * 0
    values = token_scores(critic, ro.ids, ro.mask)[:, ro.P - 1 : -1] * m  # (B, T) value before each token
    rewards = token_rewards(score, kl, m, kl_coef)  # (B, T)
    if dense is not None:
        rewards = rewards + dense * m
    adv, returns = gae(rewards, values, m, cfg.gamma, cfg.lam)  # (B, T) each
    return Advantages(masked_whiten(adv, m), returns, values)
