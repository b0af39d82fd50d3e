"""Diagnostics that read gold answers: accuracy, maj@K, reward-model AUC, the reward-hacking divergence step.

Only `evaluate`, the rl stage's watch and the scripts that build the zoo call these; no training decision
depends on them.
"""
from __future__ import annotations

from rewdistill.algo.voting import majority_vote
from rewdistill.models.forward import score_sequences
from rewdistill.sampling.hf import generate


def sample_k(sampler, prompts: list[str], temps: list[float], max_new_tokens: int, seed: int, n: int = 1,
             desc: str | None = None) -> list[list]:
    """n responses per prompt at each temperature of `temps` (temperature i sampled with seed `seed + i`).
    Returns, per prompt, its Generations in temperature order."""
    out: list[list] = [[] for _ in prompts]
    for i, t in enumerate(temps):
        for g in sampler.generate(prompts, t, n, max_new_tokens, seed=seed + i, desc=desc):
            out[g.prompt_index].append(g)
    return out


def greedy_accuracy(task, examples: list, texts: list[str]) -> float:
    """Share of examples whose response (one per example) is correct."""
    return sum(task.is_correct(t, e) for t, e in zip(texts, examples)) / len(examples)


def majority_accuracy(task, examples: list, texts: list[list[str]]) -> float:
    """maj@K: share of examples whose majority-vote answer over their K responses equals gold."""
    votes = [majority_vote([task.extract(t, e) for t in ts])[0] for ts, e in zip(texts, examples)]
    return sum(v is not None and v == e.answer for v, e in zip(votes, examples)) / len(examples)


def auc(scores: list[float], labels: list[int]) -> float | None:
    """Probability that a random correct response outscores a random wrong one (ties count half)."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def divergence_step(steps: list[int], rm_scores: list[float], gold_acc: list[float], tol: float = 0.03) -> int | None:
    """First watched step where gold accuracy has fallen more than `tol` below its best so far while the
    reward-model score is above its value at that best (reward hacking); None if that never happens."""
    best = 0
    for i in range(1, len(steps)):
        if gold_acc[i] > gold_acc[best]:
            best = i
        elif gold_acc[i] < gold_acc[best] - tol and rm_scores[i] > rm_scores[best]:
            return steps[i]
    return None


class GoldWatch:
    """The rl stage's reward-hacking watch, a diagnostic: the policy's greedy gold accuracy and mean reward-model
    score on the first `n` validation questions. What it reads is logged only, never fed back into training."""

    def __init__(self, task, n: int, fmt, rm, rm_fmt, max_new_tokens: int, engine: str = "fast"):
        self.task, self.fmt, self.rm, self.rm_fmt = task, fmt, rm, rm_fmt
        self.max_new_tokens, self.engine = max_new_tokens, engine
        self.val = task.load("validation")[:n]  # with gold
        self.prompts = [task.prompt(e) for e in self.val]

    def __call__(self, policy) -> tuple[float, float]:
        """(gold accuracy, mean reward-model score) of the policy's greedy responses."""
        gens = generate(policy, self.fmt, self.prompts, 0.0, 1, self.max_new_tokens, len(self.prompts),
                        engine=self.engine)
        gold = greedy_accuracy(self.task, self.val, [g.text for g in gens])
        seqs = [p + r for p, r in (self.rm_fmt.pair_ids(q, g.text) for q, g in zip(self.prompts, gens))]
        return gold, sum(score_sequences(self.rm, seqs, self.rm_fmt.pad_id)) / len(seqs)
