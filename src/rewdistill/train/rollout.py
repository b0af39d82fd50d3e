"""Rollouts shared by every RL algorithm: sample responses, then score them under policy and reference.

A rollout holds B = prompts x group_size responses; the group_size responses to one prompt are adjacent.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from rewdistill.models.forward import token_logprobs
from rewdistill.models.packed import Packed, pack_pairs, packed_logprobs, to_padded
from rewdistill.models.prompt import PromptFormat
from rewdistill.sampling.hf import generate


@dataclass
class Rollout:
    idx: list[int]  # (B,) prompt index of each response
    texts: list[str]  # (B,) decoded responses
    ids: torch.Tensor  # (B, P+T) left-padded prompt, then right-padded response
    mask: torch.Tensor  # (B, P+T) attention mask
    resp_mask: torch.Tensor  # (B, T) 1.0 on response tokens (EOS included)
    P: int  # prompt width: response token t sits at ids[:, P + t]
    finished: torch.Tensor  # (B,) bool, False when cut by max_new_tokens
    logp: torch.Tensor  # (B, T) log-prob of each response token under the rollout policy
    ref_logp: torch.Tensor  # (B, T) ... under the frozen reference (SFT) model

    def subset(self, keep: torch.Tensor) -> Rollout:
        """The responses where keep (B,) is True, in order."""
        rows = keep.nonzero().squeeze(1).tolist()
        return Rollout([self.idx[r] for r in rows], [self.texts[r] for r in rows], self.ids[keep], self.mask[keep],
                       self.resp_mask[keep], self.P, self.finished[keep], self.logp[keep], self.ref_logp[keep])

    @property
    def last(self) -> torch.Tensor:
        """(B,) position in `ids` of each response's last token."""
        return self.P + self.resp_mask.sum(1).long() - 1


@dataclass
class Scores:
    """What a reward source returns when part of its reward is per token (teacher-kl and its hybrids) or when it asks
    the teacher (teacher-judge: no dense part); a plain (B,) tensor means a terminal score only, no teacher asked."""

    terminal: torch.Tensor  # (B,) score at the last response token
    dense: torch.Tensor | None  # (B, T) per-token reward on the response tokens, zero on padding; None: terminal only
    teacher_tokens: int = 0  # tokens the teacher scored to make it (prompt + response), for the cost report


@dataclass
class Advantages:
    """What every RL algorithm (`ppo`, `grpo`, `rloo`: `advantages(ro, score, kl, kl_coef, cfg, critic)`) returns."""

    advantages: torch.Tensor  # (B, T) per-token advantage, zero on padding
    returns: torch.Tensor | None = None  # (B, T) value targets (GAE returns); None without a critic
    values: torch.Tensor | None = None  # (B, T) the critic's values at rollout time; None without a critic


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


def rollout_token_lists(ro: Rollout) -> tuple[list[list[int]], list[list[int]]]:
    """Each response's prompt ids (padding removed) and response ids (EOS included), as plain lists."""
    prompts, responses = [], []
    for b in range(len(ro.idx)):
        p = ro.ids[b, : ro.P][ro.mask[b, : ro.P].bool()].tolist()
        n = int(ro.resp_mask[b].sum().item())
        prompts.append(p)
        responses.append(ro.ids[b, ro.P : ro.P + n].tolist())
    return prompts, responses


def pack_rollout(prompt_ids: list[list[int]], resp_ids: list[list[int]]) -> Packed:
    """Responses packed by prompt (`models.packed`: a prompt computed once per row, its responses after it), rows
    capped at twice the longest (prompt + response) so that attention over a row stays cheap when responses are long;
    a group takes one row or more. Padding positions hold id 0 (masked, never read)."""
    return pack_pairs(list(zip(prompt_ids, resp_ids)), 0)


def packs_groups(cfg) -> bool:
    """rl.batching question with groups of >= 2 responses: minibatches of whole groups, each group one packed row
    (with one response per prompt there is no prompt to share, and padded rows are used)."""
    return cfg.batching == "question" and cfg.group_size > 1


class PromptCycle:
    """Endless shuffled passes over prompt indices; `take(k)` returns the next k."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng, self.queue = n, random.Random(seed), []

    def take(self, k: int) -> list[int]:
        while len(self.queue) < k:
            fresh = list(range(self.n))
            self.rng.shuffle(fresh)
            self.queue += fresh
        out, self.queue = self.queue[:k], self.queue[k:]
        return out


@torch.no_grad()
def sample_rollout(policy, ref, fmt: PromptFormat, prompts: list[str], encoded: list[list[int]], idx: list[int],
                   group_size: int, cfg, device, seed: int, engine: str = "fast") -> Rollout:
    """group_size responses to each prompt in `idx`, with token log-probs under policy and reference.

    The fast engine returns each token's log-prob as it samples, so the policy needs no second forward pass. With
    `packs_groups(cfg)` the reference reads each group packed in one row (`pack_rollout`)."""
    policy.eval()
    gens = generate(policy, fmt, [prompts[i] for i in idx], cfg.temperature, group_size,
                    cfg.max_new_tokens, len(idx) * group_size, seed=seed, engine=engine, logprobs=True)
    resp_idx = [idx[g.prompt_index] for g in gens]  # (B,)
    ids, mask, resp_mask, P = build_batch([encoded[i] for i in resp_idx], [g.token_ids for g in gens],
                                          fmt.pad_id)
    ids, mask, resp_mask = ids.to(device), mask.to(device), resp_mask.to(device)
    if all(g.logprobs is not None for g in gens):
        logp = torch.zeros_like(resp_mask)  # (B, T)
        for r, g in enumerate(gens):
            logp[r, : len(g.logprobs)] = torch.tensor(g.logprobs)
    else:
        logp = token_logprobs(policy, ids, mask, P, cfg.temperature) * resp_mask  # (B, T)
    if packs_groups(cfg):
        batch = pack_rollout([encoded[i] for i in resp_idx], [g.token_ids for g in gens]).to(device)
        ref_logp = to_padded(packed_logprobs(ref, batch, cfg.temperature), batch, resp_mask.shape[1])  # (B, T)
    else:
        ref_logp = token_logprobs(ref, ids, mask, P, cfg.temperature) * resp_mask  # (B, T)
    finished = torch.tensor([g.finished for g in gens], device=device)
    return Rollout(resp_idx, [g.text for g in gens], ids, mask, resp_mask, P, finished, logp, ref_logp)


def final_scores(raw: torch.Tensor, finished: torch.Tensor, scale: float,
                 unfinished_penalty: float | None) -> torch.Tensor:
    """Terminal reward: scale * raw score, or the penalty (if any) for a response cut by the length limit. (B,)."""
    if unfinished_penalty is None:
        return raw * scale
    return torch.where(finished, raw * scale, torch.full_like(raw, unfinished_penalty))
