"""Minibatch updates over one rollout: the clipped policy update (every algorithm) and the critic (PPO)."""
from __future__ import annotations

import torch

from rewdistill.algo.losses import kl_per_token, masked_mean, masked_sum_over, ppo_policy_loss, ppo_value_loss
from rewdistill.models.forward import token_logprobs, token_scores
from rewdistill.train.common import all_agree
from rewdistill.train.guard import all_finite
from rewdistill.train.rollout import Rollout


def tokens_per_process(mask: torch.Tensor, accelerator) -> torch.Tensor | None:
    """With several processes: the minibatch's token count over all of them, divided by their number (each loss
    divides its token sum by it, so DDP's gradient average weighs every token alike); None on one process."""
    if accelerator.num_processes == 1:
        return None
    return accelerator.reduce(mask.sum().detach().clone(), "sum") / accelerator.num_processes


def _minibatches(B: int, size: int, epochs: int, seed: int):
    for e in range(epochs):
        perm = torch.randperm(B, generator=torch.Generator().manual_seed(seed * 7919 + e))
        for lo in range(0, B, size):
            yield perm[lo : lo + size]


def actor_update(policy, opt, ro: Rollout, adv: torch.Tensor, cfg, accelerator, seed: int,
                 kl_loss_coef: float = 0.0, minibatch: int | None = None) -> dict[str, list[float]]:
    """Clipped surrogate on token advantages adv (B, T); with kl_loss_coef > 0 also + coef * k3 KL to the
    reference in the loss (GRPO). Returns lists of per-minibatch stats."""
    policy.train()
    stats: dict[str, list[float]] = {}
    for mb in _minibatches(len(ro.ids), minibatch or cfg.minibatch, cfg.ppo_epochs, seed):
        mb = mb.to(ro.ids.device)
        with accelerator.accumulate(policy):  # one optimiser step per minibatch (sync flag set for this step)
            with accelerator.autocast():
                new_logp, entropy = token_logprobs(policy, ro.ids[mb], ro.mask[mb], ro.P, cfg.temperature, True)
            m = ro.resp_mask[mb]
            n_tok = tokens_per_process(m, accelerator)
            loss, st = ppo_policy_loss(new_logp, ro.logp[mb], adv[mb], m, cfg.clip, n_tok)
            st["pg_loss"] = loss.item()
            if kl_loss_coef > 0:
                kl = masked_sum_over(kl_per_token(new_logp, ro.ref_logp[mb], "k3"), m, n_tok)
                loss = loss + kl_loss_coef * kl
                st["kl_loss"] = kl.item()
            opt.zero_grad()
            st["skipped_minibatches"] = 0.0
            if all_agree(accelerator, all_finite(loss)):  # a non-finite loss: the minibatch is skipped, counted
                accelerator.backward(loss)
                if all_finite(accelerator.clip_grad_norm_(policy.parameters(), 1.0)):
                    opt.step()
                else:
                    st["skipped_minibatches"] = 1.0
            else:
                st["skipped_minibatches"] = 1.0
            opt.zero_grad()
        st["entropy"] = masked_mean(entropy.detach(), m).item()
        for k, v in st.items():
            stats.setdefault(k, []).append(v)
    return stats


def critic_update(critic, opt, ro: Rollout, old_values: torch.Tensor, returns: torch.Tensor, cfg, accelerator,
                  seed: int, minibatch: int | None = None) -> dict[str, list[float]]:
    """Clipped value loss against GAE returns. old_values, returns: (B, T)."""
    critic.train()
    stats: dict[str, list[float]] = {}
    for mb in _minibatches(len(ro.ids), minibatch or cfg.minibatch, cfg.ppo_epochs, seed + 1):
        mb = mb.to(ro.ids.device)
        with accelerator.accumulate(critic):
            with accelerator.autocast():
                values = token_scores(critic, ro.ids[mb], ro.mask[mb])[:, ro.P - 1 : -1]  # (b, T)
            loss, st = ppo_value_loss(values, old_values[mb], returns[mb], ro.resp_mask[mb], cfg.value_clip,
                                      tokens_per_process(ro.resp_mask[mb], accelerator))
            opt.zero_grad()
            accelerator.backward(cfg.vf_coef * loss)
            accelerator.clip_grad_norm_(critic.parameters(), 1.0)
            opt.step()
        for k, v in {"value_loss": loss.item(), **st}.items():
            stats.setdefault(k, []).append(v)
    return stats
