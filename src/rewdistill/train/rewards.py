"""Reward sources for the rl stage. Each `make_*` returns a function: Rollout -> (B,) raw scores.

- rm: the distilled reward model's logit at the response's last token (the paper's reward);
- pseudo-label: 1.0 if the response's answer equals the teacher's majority-vote answer, else 0.0;
- hybrid: rm + hybrid_weight * (+1 agree / -1 disagree) on questions that have a pseudo-label;
- teacher-judge: the teacher's mean token log-prob of the response (responses pass as text, so the
  teacher may use another tokenizer);
- gold: 1.0 if the answer equals the gold answer. ORACLE: the only training use of gold labels.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from rewdistill.algo.losses import masked_mean
from rewdistill.models.forward import score_sequences, token_logprobs, token_scores
from rewdistill.models.prompt import PromptFormat
from rewdistill.train.rollout import Rollout, build_batch

SOURCES = ["rm", "pseudo-label", "hybrid", "teacher-judge", "gold"]


def make_rm_reward(reward_model, rm_fmt: PromptFormat | None = None,
                   prompts: list[str] | None = None) -> Callable[[Rollout], torch.Tensor]:
    """Reward-model logit of each response. With `rm_fmt` (a reward model on another tokenizer, e.g. from
    the teacher) prompt and response texts are re-tokenised for it, as in reward-model training."""

    @torch.no_grad()
    def fn(ro: Rollout) -> torch.Tensor:
        if rm_fmt is None:  # same tokenizer as the policy: score the rollout's own tokens
            scores = token_scores(reward_model, ro.ids, ro.mask)  # (B, P+T)
            return scores[torch.arange(len(ro.ids)), ro.last]
        seqs = [p + r for p, r in (rm_fmt.pair_ids(prompts[i], t) for t, i in zip(ro.texts, ro.idx))]
        return torch.tensor(score_sequences(reward_model, seqs, rm_fmt.pad_id))

    return fn


def make_match_reward(targets: list[str | None], extract: Callable[[str, int], str | None]):
    """1.0 where extract(text, prompt index) equals targets[prompt index] (never when the target is None)."""

    def fn(ro: Rollout) -> torch.Tensor:
        hits = [targets[i] is not None and extract(t, i) == targets[i] for t, i in zip(ro.texts, ro.idx)]
        return torch.tensor(hits, dtype=torch.float32)

    return fn


def make_hybrid_reward(rm_fn, match_fn, has_label: list[bool], weight: float):
    def fn(ro: Rollout) -> torch.Tensor:
        rm = rm_fn(ro).float().cpu()
        bonus = weight * (2 * match_fn(ro) - 1)  # +w agree, -w disagree
        labelled = torch.tensor([has_label[i] for i in ro.idx])
        return rm + torch.where(labelled, bonus, torch.zeros_like(bonus))

    return fn


def make_teacher_judge_reward(teacher, teacher_fmt: PromptFormat, prompts: list[str], batch_size: int = 64):
    """Mean per-token log-prob of the response under the teacher, given the prompt (<= 0; higher is better)."""
    device = next(teacher.parameters()).device

    @torch.no_grad()
    def fn(ro: Rollout) -> torch.Tensor:
        out = []
        for lo in range(0, len(ro.texts), batch_size):
            texts, idx = ro.texts[lo : lo + batch_size], ro.idx[lo : lo + batch_size]
            pairs = [teacher_fmt.pair_ids(prompts[i], t) for t, i in zip(texts, idx)]
            ids, mask, resp_mask, P = build_batch([p for p, _ in pairs], [r for _, r in pairs], teacher_fmt.pad_id)
            ids, mask, resp_mask = ids.to(device), mask.to(device), resp_mask.to(device)
            logp = token_logprobs(teacher, ids, mask, P)  # (b, T)
            out.append(masked_mean(logp, resp_mask, dim=1).cpu())
        return torch.cat(out)

    return fn
