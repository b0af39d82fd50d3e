"""The rl stage's gold-free selection checks: the selection questions (validation questions the teacher answered,
gold never read) and the two scores of a policy on them, greedy agreement with the pseudo-labels and the teacher's
vote share of sampled answers (`rl.select_metric`)."""
from __future__ import annotations

import torch

from rewdistill.io import read_jsonl
from rewdistill.labels import answer_shares, teacher_vote_score
from rewdistill.sampling.hf import generate
from rewdistill.stages.common import Ctx


def selection_questions(ctx: Ctx) -> list[dict]:
    """The selection questions with a kept pseudo-label: {qid, prompt, pseudo_answer, question} (`question`: the
    task's Question, no gold, for answer extraction); none when not sampled."""
    if not ctx.path("selection_labels.jsonl").exists():
        return []
    labels = {lab["qid"]: lab for lab in read_jsonl(ctx.path("selection_labels.jsonl"))}
    by_id = {q.qid: q for q in ctx.task.questions("validation")}
    return [{**q, "pseudo_answer": labels[q["qid"]]["pseudo_answer"], "question": by_id[q["qid"]]}
            for q in read_jsonl(ctx.path("selection_questions.jsonl")) if labels.get(q["qid"], {}).get("kept")]


def vote_questions(ctx: Ctx) -> list[dict]:
    """Every selection question (kept pseudo-label or not) with the teacher's answer shares: {prompt, question,
    shares}."""
    shares = answer_shares(read_jsonl(ctx.path("selection_samples.jsonl")))
    by_id = {q.qid: q for q in ctx.task.questions("validation")}
    return [{**q, "question": by_id[q["qid"]], "shares": shares.get(q["qid"], {})}
            for q in read_jsonl(ctx.path("selection_questions.jsonl"))]


@torch.no_grad()
def selection_teacher_vote(ctx: Ctx, policy, fmt, qs: list[dict], k: int, max_new_tokens: int, engine: str) -> float:
    """The teacher's mean vote share of the policy's answers: k samples (T = 1) per selection question. The
    global RNG is left as it was, so that logging this score does not change the RL run."""
    dev = next(policy.parameters()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        gens = generate(policy, fmt, [q["prompt"] for q in qs], 1.0, k, max_new_tokens, min(len(qs) * k, 256),
                        seed=1, engine=engine)  # the same seed at every check: differences between checks are the
        # policy's, not the sampling noise's
    answers = [[ctx.task.extract(g.text, q["question"]) for g in gens[i * k:(i + 1) * k]] for i, q in enumerate(qs)]
    return teacher_vote_score(answers, [q["shares"] for q in qs])


@torch.no_grad()
def selection_agreement(ctx: Ctx, policy, fmt, qs: list[dict], max_new_tokens: int, engine: str) -> float:
    """Share of the selection questions whose greedy answer equals the teacher's pseudo-label."""
    gens = generate(policy, fmt, [q["prompt"] for q in qs], 0.0, 1, max_new_tokens, len(qs), engine=engine)
    return sum(ctx.task.extract(g.text, q["question"]) == q["pseudo_answer"] for g, q in zip(gens, qs)) / len(qs)
