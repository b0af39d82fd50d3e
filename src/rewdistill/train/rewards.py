"""Reward sources for the rl stage. Each `make_*` returns a function: Rollout -> (B,) raw scores.

- rm: the distilled reward model's score (`models.reward`: a likelihood reward model's calibrated mean log-prob, or
  the paper's scalar head at the response's last token);
- pseudo-label: 1.0 if the response's answer equals the teacher's majority-vote answer, else 0.0;
- hybrid: rm + hybrid_weight * (+1 agree / -1 disagree) on questions that have a pseudo-label;
- rm-vote: the reward model's weighted vote share of the response's answer among its group's responses (groups
  of rl.group_size >= 2; `rl.vote_weights uniform` makes it plain self-consistency, no reward model);
- teacher-judge: the teacher's mean token log-prob of the response (responses pass as text, so the
  teacher may use another tokenizer; returns `Scores` without a dense part, to count the teacher's tokens);
- teacher-kl: on-policy distillation, per token log p_teacher - log p_student on the student's own rollout
  (returns `Scores` with a zero terminal part; the teacher must share the student's tokenizer);
- rm+teacher-kl: the rm score plus teacher_kl_coef x the teacher-kl tokens, or gated per prompt by the teacher's
  vote share (`algo.dense.vote_gate`);
- gold: 1.0 if the answer equals the gold answer. ORACLE: the only training use of gold labels.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from rewdistill.algo.dense import teacher_kl_tokens, vote_gate
from rewdistill.algo.losses import masked_mean
from rewdistill.algo.voting import weighted_vote_shares
from rewdistill.models.forward import token_logprobs, token_scores
from rewdistill.models.prompt import PromptFormat
from rewdistill.models.reward import is_likelihood, packed_scores, score_pairs
from rewdistill.train.rollout import Rollout, Scores, build_batch, pack_rollout, rollout_token_lists

SOURCES = ["rm", "rm-vote", "pseudo-label", "hybrid", "teacher-judge", "teacher-kl", "rm+teacher-kl", "gold"]


def make_rm_reward(reward_model, rm_fmt: PromptFormat | None = None, prompts: list[str] | None = None,
                   packed: bool = False) -> Callable[[Rollout], torch.Tensor]:
    """Reward-model score of each response (either kind). With `rm_fmt` (a reward model on another tokenizer) prompt
    and response texts are re-tokenised for it, as in reward-model training. `packed` (rl.batching question): a
    same-tokenizer reward model reads each group in one row, its prompt computed once."""

    @torch.no_grad()
    def fn(ro: Rollout) -> torch.Tensor:
        device = next(reward_model.parameters()).device
        if rm_fmt is None and packed:  # same tokenizer, each group one packed row (either kind)
            return packed_scores(reward_model, pack_rollout(*rollout_token_lists(ro)).to(device)).float().cpu()
        if rm_fmt is None and is_likelihood(reward_model):  # same tokenizer: the rollout's own tokens
            resp = torch.cat([torch.zeros_like(ro.mask[:, : ro.P]), ro.resp_mask.to(ro.mask.dtype)], 1)  # (B, P+T)
            return reward_model(ro.ids.to(device), ro.mask.to(device), resp.to(device)).float().cpu()
        if rm_fmt is None:
            scores = token_scores(reward_model, ro.ids, ro.mask)  # (B, P+T)
            return scores[torch.arange(len(ro.ids)), ro.last]
        pairs = [rm_fmt.pair_ids(prompts[i], t) for t, i in zip(ro.texts, ro.idx)]
        return torch.tensor(score_pairs(reward_model, pairs, rm_fmt.pad_id))

    return fn


def make_match_reward(targets: list[str | None], extract: Callable[[str, int], str | None]):
    """1.0 where extract(text, prompt index) equals targets[prompt index] (never when the target is None)."""

    def fn(ro: Rollout) -> torch.Tensor:
        hits = [targets[i] is not None and extract(t, i) == targets[i] for t, i in zip(ro.texts, ro.idx)]
        return torch.tensor(hits, dtype=torch.float32)

    return fn


def make_vote_reward(rm_fn, extract: Callable[[str, int], str | None]):
    """Weighted vote share of each response's answer within its prompt's group; weights sigmoid(rm logit), or
    1.0 each when rm_fn is None. Scores answers, not wording: the reward model cannot be flattered by style."""

    def fn(ro: Rollout) -> torch.Tensor:
        weights = [1.0] * len(ro.texts) if rm_fn is None else torch.sigmoid(rm_fn(ro).float().cpu()).tolist()
        answers = [extract(t, i) for t, i in zip(ro.texts, ro.idx)]
        return torch.tensor(weighted_vote_shares(answers, ro.idx, weights), dtype=torch.float32)

    return fn


def make_hybrid_reward(rm_fn, match_fn, has_label: list[bool], weight: float):
    def fn(ro: Rollout) -> torch.Tensor:
        rm = rm_fn(ro).float().cpu()
        bonus = weight * (2 * match_fn(ro) - 1)  # +w agree, -w disagree
        labelled = torch.tensor([has_label[i] for i in ro.idx])
        return rm + torch.where(labelled, bonus, torch.zeros_like(bonus))

    return fn


def make_teacher_judge_reward(teacher, teacher_fmt: PromptFormat, prompts: list[str], batch_size: int = 64):
    """Mean per-token log-prob of the response under the teacher, given the prompt (<= 0; higher is better), as
    `Scores` with no dense part, counting the tokens the teacher read (prompt + response) for the cost report."""
    device = next(teacher.parameters()).device

    @torch.no_grad()
    def fn(ro: Rollout) -> Scores:
        out, n_tok = [], 0
        for lo in range(0, len(ro.texts), batch_size):
            texts, idx = ro.texts[lo : lo + batch_size], ro.idx[lo : lo + batch_size]
            pairs = [teacher_fmt.pair_ids(prompts[i], t) for t, i in zip(texts, idx)]
            ids, mask, resp_mask, P = build_batch([p for p, _ in pairs], [r for _, r in pairs], teacher_fmt.pad_id)
            ids, mask, resp_mask = ids.to(device), mask.to(device), resp_mask.to(device)
            logp = token_logprobs(teacher, ids, mask, P)  # (b, T)
            out.append(masked_mean(logp, resp_mask, dim=1).cpu())
            n_tok += sum(len(p) + len(r) for p, r in pairs)
        return Scores(torch.cat(out), None, n_tok)

    return fn


def local_teacher_logprobs(teacher, batch_size: int = 64):
    """Teacher log-probs of a rollout's response tokens from an in-process model that reads the same tokens: one
    batched forward over the rollout's own ids, no grad. Returns rollout -> ((B, T) log-probs, tokens scored)."""
    device = next(teacher.parameters()).device

    @torch.no_grad()
    def fn(ro: Rollout) -> tuple[torch.Tensor, int]:
        out = []
        for lo in range(0, len(ro.idx), batch_size):
            ids, mask = ro.ids[lo : lo + batch_size].to(device), ro.mask[lo : lo + batch_size].to(device)
            out.append(token_logprobs(teacher, ids, mask, ro.P).float().cpu())  # (b, T)
        return torch.cat(out) * ro.resp_mask.cpu(), int(ro.mask.sum().item())

    return fn


def remote_teacher_logprobs(scorer):
    """Teacher log-probs from a backend that scores token lists (`scorer.token_logprobs(prompts, responses)`: vLLM's
    prompt_logprobs, or an OpenAI-compatible completions server with echo + logprobs)."""

    def fn(ro: Rollout) -> tuple[torch.Tensor, int]:
        prompts, responses = rollout_token_lists(ro)
        rows = scorer.token_logprobs(prompts, responses)
        out = torch.zeros(ro.resp_mask.shape)  # (B, T)
        for b, lp in enumerate(rows):
            if len(lp) != len(responses[b]):
                raise RuntimeError(f"teacher backend scored {len(lp)} of {len(responses[b])} response tokens; it must "
                                   "serve a model with the student's tokenizer")
            out[b, : len(lp)] = torch.tensor(lp)
        return out, sum(len(p) + len(r) for p, r in zip(prompts, responses))

    return fn


def make_teacher_kl_reward(teacher_logprobs, rm_fn=None, coef: float = 1.0, gate_shares: list[float] | None = None,
                           gate_lo: float = 0.5, gate_hi: float = 1.0):
    """teacher-kl (rm_fn None): dense log p_teacher - log p_student, no terminal score. rm+teacher-kl: terminal rm
    score plus coef x the dense term; with `gate_shares` (teacher vote share per prompt) the dense term is weighted
    by g = vote_gate(share) and the rm score by 1 - g."""

    def fn(ro: Rollout) -> Scores:
        t_logp, n_tok = teacher_logprobs(ro)  # (B, T)
        mask = ro.resp_mask.cpu()
        dense = teacher_kl_tokens(t_logp, ro.logp.float().cpu(), mask)  # (B, T)
        terminal = torch.zeros(len(ro.idx)) if rm_fn is None else rm_fn(ro).float().cpu()
        if rm_fn is not None:
            if gate_shares is None:
                dense = coef * dense
            else:
                g = vote_gate(torch.tensor([gate_shares[i] for i in ro.idx], dtype=torch.float32), gate_lo, gate_hi)
                dense, terminal = coef * g[:, None] * dense, (1 - g) * terminal
        return Scores(terminal, dense, n_tok)

    return fn
