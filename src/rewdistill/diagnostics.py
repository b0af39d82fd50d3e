"""Diagnostics that read gold answers: accuracy, maj@K, reward-model AUC, the reward-hacking divergence step.

Only `evaluate`, the rl stage's watch and the scripts that build the zoo call these; no training decision
depends on them.
"""
from __future__ import annotations

from rewdistill.algo.voting import majority_vote
from rewdistill.models.reward import score_pairs
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
    pos = [s for s, lab in zip(scores, labels) if lab]
    neg = [s for s, lab in zip(scores, labels) if not lab]
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
        pairs = [self.rm_fmt.pair_ids(q, g.text) for q, g in zip(self.prompts, gens)]
        return gold, sum(score_pairs(self.rm, pairs, self.rm_fmt.pad_id)) / len(pairs)


def ranking(task, examples: list, groups: list[list[tuple[float, str]]]) -> dict:
    """Can the reward model rank a student's own responses? groups[i]: (reward-model score, response text) of the K
    responses to examples[i]. Returns accuracies (0-1) of: a random sample (`sample_mean`), the response the reward
    model scores highest (`rm_best_of_k`), the majority vote (`maj_at_k`), any of the K (`pass_at_k`); the reward
    model's AUC over all responses (`rm_auc`: easy vs hard questions count) and its mean AUC within a question over
    the questions with right and wrong responses (`rm_auc_within`: all that RL can use), and how many such
    questions there are (`mixed_questions`)."""
    n = len(examples)
    ok = [[task.is_correct(t, e) for _, t in grp] for grp, e in zip(groups, examples)]  # (n, K) bool
    within = [auc([s for s, _ in grp], [int(c) for c in oks]) for grp, oks in zip(groups, ok)]
    within = [a for a in within if a is not None]  # questions with right and wrong responses
    return {
        "k": len(groups[0]) if groups else 0,
        "sample_mean": sum(map(sum, ok)) / max(1, sum(map(len, ok))),
        "rm_best_of_k": sum(oks[max(range(len(grp)), key=lambda j: grp[j][0])] for grp, oks in zip(groups, ok)) / n,
        "maj_at_k": majority_accuracy(task, examples, [[t for _, t in grp] for grp in groups]),
        "pass_at_k": sum(any(oks) for oks in ok) / n,
        "rm_auc": auc([s for grp in groups for s, _ in grp], [int(c) for oks in ok for c in oks]),
        "rm_auc_within": sum(within) / len(within) if within else None,
        "mixed_questions": len(within),
    }


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 points or a constant series."""
    if len(x) < 3 or len(x) != len(y):
        return None

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / (vx * vy) ** 0.5


def paired_bootstrap(a: list[bool], b: list[bool], n: int = 2000, seed: int = 0) -> dict:
    """Accuracy difference mean(a) - mean(b) on the same questions, with a 95% bootstrap interval over questions
    (questions resampled with replacement, `n` times). a, b: per-question correctness, in the same order."""
    import random

    assert len(a) == len(b) and a, "paired_bootstrap needs the same, non-empty list of questions"
    d = [int(x) - int(y) for x, y in zip(a, b)]
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for _ in range(n))
    return {"diff": sum(d) / len(d), "lo": means[int(0.025 * n)], "hi": means[int(0.975 * n) - 1], "n": len(d)}
