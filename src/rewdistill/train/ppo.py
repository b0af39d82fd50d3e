"""PPO on the student with a learned reward model and a per-token KL penalty to the frozen SFT model.

Departures from textbook PPO, as in RLHF practice (Ziegler et al. 2019; Ouyang et al. 2022):
- the episode is one response; the reward-model score (a logit, times `reward_scale`) arrives at the
  last token, and every token pays `kl_coef * KL(pi || ref)` estimated from the sampled tokens;
- a response cut by `max_new_tokens` gets `unfinished_penalty` instead of a score;
- advantages are whitened per rollout; the critic is a separate model initialised from the reward model.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.algo.losses import (
    gae,
    kl_per_token,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_rewards,
)
from rewdistill.sampling.hf import generate
from rewdistill.train.common import token_logprobs, token_scores


@dataclass
class Experience:
    ids: torch.Tensor  # (B, P+T) left-padded prompt, then right-padded response
    mask: torch.Tensor  # (B, P+T) attention mask
    resp_mask: torch.Tensor  # (B, T) 1.0 on response tokens (EOS included)
    logp: torch.Tensor  # (B, T) log-prob of each response token under the rollout policy
    ref_logp: torch.Tensor  # (B, T) ... under the frozen reference (SFT) model
    values: torch.Tensor  # (B, T) critic value before each response token
    score: torch.Tensor  # (B,) terminal reward (reward-model score, or the unfinished penalty)
    advantages: torch.Tensor  # (B, T) whitened GAE advantages
    returns: torch.Tensor  # (B, T) value targets


def build_batch(prompt_ids: list[list[int]], resp_ids: list[list[int]], pad: int):
    """Left-pad prompts to P, right-pad responses to T; returns ids, mask (B, P+T), resp_mask (B, T), P."""
    P = max(len(p) for p in prompt_ids)
    T = max(1, max(len(r) for r in resp_ids))
    B = len(prompt_ids)
    ids = torch.full((B, P + T), pad, dtype=torch.long)
    mask = torch.zeros((B, P + T), dtype=torch.long)
    resp_mask = torch.zeros((B, T))
    for i, (p, r) in enumerate(zip(prompt_ids, resp_ids)):
        ids[i, P - len(p) : P] = torch.tensor(p)
        ids[i, P : P + len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, P - len(p) : P + len(r)] = 1
        resp_mask[i, : len(r)] = 1.0
    return ids, mask, resp_mask, P


def train_ppo(
    policy,
    ref,
    critic,
    reward_model,
    tokenizer,
    prompts: list[str],
    cfg,  # RLCfg
    *,
    accelerator: Accelerator,
    seed: int,
    log: Callable[[dict], None],
    score_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
    on_step: Callable[[int, list[str], list[int]], None] | None = None,  # (step, texts, prompt indices)
):
    """Run `cfg.steps` PPO iterations; returns the prepared (possibly wrapped) policy."""
    pad = tokenizer.pad_token_id
    opt_p = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)
    policy, critic, opt_p, opt_c = accelerator.prepare(policy, critic, opt_p, opt_c)
    device = accelerator.device
    ref.to(device).eval()
    reward_model.to(device).eval()
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rng = random.Random(seed)
    order: list[int] = []
    bar = tqdm(total=cfg.steps, desc="rl (ppo)", unit="step", disable=not accelerator.is_main_process)
    for step in range(1, cfg.steps + 1):
        # ---- rollout ----
        if len(order) < cfg.rollout_batch:
            fresh = list(range(len(prompts)))
            rng.shuffle(fresh)
            order += fresh
        batch_idx, order = order[: cfg.rollout_batch], order[cfg.rollout_batch :]
        policy.eval()
        gens = generate(
            accelerator.unwrap_model(policy), tokenizer, [prompts[i] for i in batch_idx], cfg.temperature, 1,
            cfg.max_new_tokens, len(batch_idx), seed=seed * 100_003 + step,
        )
        ids, mask, resp_mask, P = build_batch([encoded[i] for i in batch_idx], [g.token_ids for g in gens], pad)
        ids, mask, resp_mask = ids.to(device), mask.to(device), resp_mask.to(device)
        finished = torch.tensor([g.finished for g in gens], device=device)
        with torch.no_grad():
            logp = token_logprobs(policy, ids, mask, P, cfg.temperature) * resp_mask  # (B, T)
            ref_logp = token_logprobs(ref, ids, mask, P, cfg.temperature) * resp_mask  # (B, T)
            values = token_scores(critic, ids, mask)[:, P - 1 : -1] * resp_mask  # (B, T)
            last = P + resp_mask.sum(1).long() - 1  # (B,) index of the last response token
            if score_fn is None:
                rm_score = token_scores(reward_model, ids, mask)[torch.arange(len(ids)), last]  # (B,)
            else:
                rm_score = score_fn(ids, mask, P)
            score = torch.where(finished, rm_score * cfg.reward_scale, torch.full_like(rm_score, cfg.unfinished_penalty))
            kl = kl_per_token(logp, ref_logp, cfg.kl_estimator) * resp_mask  # (B, T)
            rewards = token_rewards(score, kl, resp_mask, cfg.kl_coef)  # (B, T)
            adv, returns = gae(rewards.cpu(), values.cpu(), resp_mask.cpu(), cfg.gamma, cfg.lam)
            adv = masked_whiten(adv.to(device), resp_mask)
            returns = returns.to(device)
        exp = Experience(ids, mask, resp_mask, logp, ref_logp, values, score, adv, returns)

        # ---- update ----
        policy.train()
        critic.train()
        stats: dict[str, list[float]] = {}
        B = len(batch_idx)
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(B, generator=torch.Generator().manual_seed(seed + step * 7919 + _))
            for lo in range(0, B, cfg.minibatch):
                mb = perm[lo : lo + cfg.minibatch].to(device)
                with accelerator.autocast():
                    new_logp, entropy = token_logprobs(policy, exp.ids[mb], exp.mask[mb], P, cfg.temperature, True)
                    new_values = token_scores(critic, exp.ids[mb], exp.mask[mb])[:, P - 1 : -1]
                m = exp.resp_mask[mb]
                pg_loss, pg_stats = ppo_policy_loss(new_logp, exp.logp[mb], exp.advantages[mb], m, cfg.clip)
                v_loss, v_stats = ppo_value_loss(new_values, exp.values[mb], exp.returns[mb], m, cfg.value_clip)
                opt_p.zero_grad()
                opt_c.zero_grad()
                accelerator.backward(pg_loss + cfg.vf_coef * v_loss)
                accelerator.clip_grad_norm_(policy.parameters(), 1.0)
                accelerator.clip_grad_norm_(critic.parameters(), 1.0)
                opt_p.step()
                opt_c.step()
                for k, v in {"pg_loss": pg_loss.item(), "value_loss": v_loss.item(),
                             "entropy": masked_mean(entropy.detach(), m).item(), **pg_stats, **v_stats}.items():
                    stats.setdefault(k, []).append(v)
        row = {
            "stage": "rl", "step": step,
            "reward": exp.score.mean().item(),
            "kl": (kl.sum(1)).mean().item(),  # per-response KL(pi || ref), summed over tokens
            "response_length": resp_mask.sum(1).mean().item(),
            "finished_frac": finished.float().mean().item(),
            **{k: sum(v) / len(v) for k, v in stats.items()},
        }
        log(row)
        if on_step is not None:
            on_step(step, [g.text for g in gens], batch_idx)
        bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{row['kl']:.3f}")
        bar.update(1)
    bar.close()
    return policy
