"""Stage 7: accuracy on held-out test questions with gold answers, plus diagnostics.

The only stage (with the labelled `gold` oracle) that reads gold answers.
"""
from __future__ import annotations

from rewdistill.algo.voting import majority_vote
from rewdistill.io import read_jsonl, write_json, write_jsonl
from rewdistill.models.load import load_reward_model
from rewdistill.report import write_report
from rewdistill.sampling.backends import local_sampler, teacher_sampler
from rewdistill.stages.common import Ctx
from rewdistill.stages.rl import divergence_step
from rewdistill.stages.sft import encode_pairs
from rewdistill.train.reward_model import score_sequences


def auc(scores: list[float], labels: list[int]) -> float | None:
    """Probability that a random correct response outscores a random wrong one (ties count half)."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def run(ctx: Ctx) -> str:
    cfg, m = ctx.cfg.evaluate, ctx.cfg.models
    task = ctx.task
    test = task.load(cfg.split)[: ctx.cfg.task.n_test]
    prompts = [task.prompt(e) for e in test]
    samples: list[dict] = []

    def sample(name: str, sampler, temps: list[float]) -> list[list[str]]:
        texts: list[list[str]] = [[] for _ in test]
        for i, t in enumerate(temps):
            for g in sampler.generate(prompts, t, 1, cfg.max_new_tokens, seed=ctx.cfg.seed * 7 + i,
                                      desc=f"eval {name}"):
                texts[g.prompt_index].append(g.text)
                ex = test[g.prompt_index]
                samples.append({"model": name, "qid": ex.qid, "temperature": t, "text": g.text,
                                "extracted": task.extract(g.text, ex), "correct": task.is_correct(g.text, ex)})
        return texts

    def greedy_acc(texts: list[list[str]]) -> float:
        return sum(task.is_correct(t[0], e) for t, e in zip(texts, test)) / len(test)

    acc: dict[str, float] = {}
    if cfg.teacher:
        teacher = teacher_sampler(ctx, cfg.batch_size, purpose="eval")  # loaded once for greedy and maj@K
        acc["teacher_greedy"] = greedy_acc(sample("teacher_greedy", teacher, [0.0]))
        temps = ctx.cfg.teacher_sample.temperatures
        k_temps = [temps[i % len(temps)] for i in range(cfg.maj_k)]
        maj_texts = sample("teacher_maj", teacher, k_temps)
        del teacher
        votes = [majority_vote([task.extract(t, e) for t in ts])[0] for ts, e in zip(maj_texts, test)]
        acc["teacher_maj_at_k"] = sum(v == e.answer for v, e in zip(votes, test)) / len(test)
    students = {"student_base": m.student, "student_sft": str(ctx.path("student_sft")),
                "student_rl": str(ctx.path("student_rl"))}
    for name, path in students.items():
        acc[name] = greedy_acc(sample(name, local_sampler(ctx, path, cfg.batch_size), [0.0]))

    # Diagnostic 1: how often the pseudo-labels equal gold on the training questions.
    labels = read_jsonl(ctx.path("labels.jsonl"))
    gold = {e.qid: e.answer for e in task.load("train")}  # judge labels have no pseudo answer: these read 0
    kept = [l for l in labels if l["kept"]]
    pl_acc_kept = sum(l["pseudo_answer"] == gold[l["qid"]] for l in kept) / max(1, len(kept))
    pl_acc_all = sum(l["pseudo_answer"] == gold[l["qid"]] for l in labels) / max(1, len(labels))
    # ... and how often a teacher response's label (vote agreement or judge) equals its gold correctness
    train_by_id = {e.qid: e for e in task.load("train")}
    labelled = read_jsonl(ctx.path("teacher_labelled.jsonl"))
    label_acc = sum(r["label"] == int(task.is_correct(r["text"], train_by_id[r["qid"]])) for r in labelled) \
        / max(1, len(labelled))

    # Diagnostic 2: the reward model against gold on held-out (test) responses it never saw.
    rm_dir = str(ctx.path("reward_model"))
    tok = ctx.tokenizer(rm_dir)
    rm = load_reward_model(rm_dir, ctx.device, m.dtype)
    test_prompts = {e.qid: p for e, p in zip(test, prompts)}
    judged = [s for s in samples if s["model"] in ("teacher_maj", "student_sft", "student_rl")]
    seqs = [p + r for p, r in encode_pairs(tok, test_prompts, judged)]
    scores = score_sequences(rm, seqs, tok.pad_token_id)
    for s, sc in zip(judged, scores):
        s["rm_score"] = sc
    correct = [int(s["correct"]) for s in judged]
    rm_acc = sum((sc > 0) == bool(c) for sc, c in zip(scores, correct)) / max(1, len(judged))

    # Diagnostic 3: the rl stage's reward-hacking watch (validation gold accuracy vs reward-model score).
    watch = [r for r in read_jsonl(ctx.path("rl_metrics.jsonl")) if "watch_val_gold_accuracy" in r] \
        if ctx.path("rl_metrics.jsonl").exists() else []
    steps = [r["step"] for r in watch]
    gold_curve = [r["watch_val_gold_accuracy"] for r in watch]
    rm_curve = [r["watch_val_rm_score"] for r in watch]

    write_jsonl(ctx.path("eval_samples.jsonl"), samples)
    results = {
        "task": ctx.cfg.task.name,
        "seed": ctx.cfg.seed,
        "split": cfg.split,
        "n_test": len(test),
        "accuracy": acc,
        "maj_k": cfg.maj_k,
        "unparsable": {name: sum(s["extracted"] is None for s in samples if s["model"] == name)
                       for name in acc if name != "teacher_maj_at_k"},
        "diagnostics": {
            "pseudo_label_accuracy": pl_acc_kept,  # on the kept questions (those used for training)
            "pseudo_label_accuracy_kept": pl_acc_kept,
            "pseudo_label_accuracy_all": pl_acc_all,
            "response_label_accuracy": label_acc,
            "questions_kept": len(kept),
            "questions_total": len(labels),
            "reward_model_accuracy": rm_acc,
            "reward_model_auc": auc(scores, correct),
            "reward_model_eval_responses": len(judged),
            "rl_watch": {"step": steps, "val_gold_accuracy": gold_curve, "val_rm_score": rm_curve},
            "rl_divergence_step": divergence_step(steps, rm_curve, gold_curve) if len(steps) > 1 else None,
        },
        "rl": {"algo": ctx.cfg.rl.algo, "reward": ctx.cfg.rl.reward, "rounds": ctx.cfg.rl.rounds},
    }
    write_json(ctx.path("results.json"), results)
    write_report(ctx.run_dir, results, ctx.cfg)
    vs_teacher = f" vs teacher {acc['teacher_greedy']:.1%}" if "teacher_greedy" in acc else ""
    return f"RL student {acc['student_rl']:.1%} vs SFT {acc['student_sft']:.1%}{vs_teacher} (greedy, {cfg.split})"
