"""Minibatch updates over one rollout: the clipped policy update (every algorithm) and the critic (PPO)."""
from __future__ import annotations

import torch

from rewdistill.algo.losses import kl_per_token, masked_mean, masked_sum_over, ppo_policy_loss, ppo_value_loss
from rewdistill.models.forward import token_logprobs, token_scores
from rewdistill.models.packed import packed_logprobs, to_padded
from rewdistill.train.common import all_agree
from rewdistill.train.guard import all_finite
from rewdistill.train.rollout import Rollout, pack_rollout, packs_groups, rollout_token_lists


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


def _group_minibatches(B: int, size: int, group: int, epochs: int, seed: int):
    """Like `_minibatches`, but each minibatch holds whole groups (max(1, size // group) of them) of `group`
    adjacent responses, the groups in a fresh random order every epoch."""
    if B % group:
        raise ValueError(f"rl.batching question: {B} responses are not whole groups of rl.group_size {group}")
    n_groups, per = B // group, max(1, size // group)
    for e in range(epochs):
        perm = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed * 7919 + e))
        for lo in range(0, n_groups, per):
            yield (perm[lo : lo + per, None] * group + torch.arange(group)).reshape(-1)  # (per * group,)


def policy_logprobs(policy, ro: Rollout, mb: torch.Tensor, temperature: float, token_lists=None):
    """Log-probs and entropies (b, T) of minibatch `mb`'s response tokens under `policy`: on its padded rows, or
    with `token_lists` (the rollout's prompt ids and response ids: `rollout_token_lists`) packed by prompt."""
    if token_lists is None:
        return token_logprobs(policy, ro.ids[mb], ro.mask[mb], ro.P, temperature, True)
    prompts, responses = token_lists
    batch = pack_rollout([prompts[i] for i in mb.tolist()], [responses[i] for i in mb.tolist()]).to(ro.ids.device)
    logp, entropy = packed_logprobs(policy, batch, temperature, True)  # (N,) each
    width = ro.resp_mask.shape[1]
    return to_padded(logp, batch, width), to_padded(entropy, batch, width)


def actor_update(policy, opt, ro: Rollout, adv: torch.Tensor, cfg, accelerator, seed: int,
                 kl_loss_coef: float = 0.0, minibatch: int | None = None) -> dict[str, list[float]]:
    """Clipped surrogate on token advantages adv (B, T); with kl_loss_coef > 0 also + coef * k3 KL to the
    reference in the loss (GRPO). `packs_groups(cfg)`: minibatches of whole groups, each group one packed row
    (the groups of cfg.group_size responses must be adjacent, as `sample_rollout` returns them; a minibatch is
    rounded to whole groups, at least one). Returns lists of per-minibatch stats."""
    policy.train()
    stats: dict[str, list[float]] = {}
    size = minibatch or cfg.minibatch
    if packs_groups(cfg):
        token_lists = rollout_token_lists(ro)
        batches = _group_minibatches(len(ro.ids), size, cfg.group_size, cfg.ppo_epochs, seed)
    else:
        token_lists, batches = None, _minibatches(len(ro.ids), size, cfg.ppo_epochs, seed)
    for mb in batches:
        mb = mb.to(ro.ids.device)
        with accelerator.accumulate(policy):  # one optimiser step per minibatch (sync flag set for this step)
            with accelerator.autocast():
                new_logp, entropy = policy_logprobs(policy, ro, mb, cfg.temperature, token_lists)  # (b, T) each
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
