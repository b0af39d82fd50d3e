"""Stage 7: accuracy on held-out test questions with gold answers, plus diagnostics.

The only stage (with the labelled `gold` oracle and the rl stage's watch) that reads gold answers.
"""
from __future__ import annotations

from rewdistill.cards import write_model_cards
from rewdistill.diagnostics import (
    auc,
    divergence_step,
    greedy_accuracy,
    majority_accuracy,
    ranking,
    sample_k,
    spearman,
)
from rewdistill.io import read_json, read_jsonl, write_json, write_jsonl
from rewdistill.models.reward import LikelihoodRM, load_reward, score_pairs
from rewdistill.report import write_report
from rewdistill.stages.common import Ctx


def run(ctx: Ctx) -> str:
    cfg, m = ctx.cfg.evaluate, ctx.cfg.models
    task = ctx.task
    test = task.load(cfg.split)[: ctx.cfg.task.n_test]  # with gold
    prompts = [task.prompt(e) for e in test]
    samples: list[dict] = []

    def sample(name: str, sampler, temps: list[float]) -> list[list[str]]:
        """Responses per test question, one per temperature (seed seed*7 + i); every one goes to `samples`."""
        gens = sample_k(sampler, prompts, temps, cfg.max_new_tokens, ctx.cfg.seed * 7, desc=f"eval {name}")
        for i, t in enumerate(temps):  # temperature-major, as they were sampled
            for ex, g in zip(test, (per_q[i] for per_q in gens)):
                samples.append({"model": name, "qid": ex.qid, "temperature": t, "text": g.text,
                                "extracted": task.extract(g.text, ex), "correct": task.is_correct(g.text, ex)})
        return [[g.text for g in per_q] for per_q in gens]

    acc: dict[str, float] = {}
    if cfg.teacher:
        teacher = ctx.teacher_sampler(cfg.batch_size, purpose="eval")  # loaded once for greedy and maj@K
        acc["teacher_greedy"] = greedy_accuracy(task, test, [t[0] for t in sample("teacher_greedy", teacher, [0.0])])
        temps = ctx.cfg.teacher_sample.temperatures
        k_temps = [temps[i % len(temps)] for i in range(cfg.maj_k)]
        acc["teacher_maj_at_k"] = majority_accuracy(task, test, sample("teacher_maj", teacher, k_temps))
        del teacher
    rounds = ctx.cfg.rl.rounds
    students = {"student_base": m.student, "student_sft": str(ctx.path("student_sft")),
                "student_rl": str(ctx.round_path("student_rl", rounds))}
    for name, path in students.items():
        texts = sample(name, ctx.local_sampler(path, cfg.batch_size), [0.0])
        acc[name] = greedy_accuracy(task, test, [t[0] for t in texts])

    # Diagnostic 1: how often the pseudo-labels equal gold on the training questions.
    labels = read_jsonl(ctx.path("labels.jsonl"))
    train = {e.qid: e for e in task.load("train")}  # judge labels have no pseudo answer: these read 0
    kept = [lab for lab in labels if lab["kept"]]
    pl_acc_kept = sum(lab["pseudo_answer"] == train[lab["qid"]].answer for lab in kept) / max(1, len(kept))
    pl_acc_all = sum(lab["pseudo_answer"] == train[lab["qid"]].answer for lab in labels) / max(1, len(labels))
    # ... and how often a teacher response's label (vote agreement or judge) equals its gold correctness
    labelled = read_jsonl(ctx.path("teacher_labelled.jsonl"))
    label_acc = sum(r["label"] == int(task.is_correct(r["text"], train[r["qid"]])) for r in labelled) \
        / max(1, len(labelled))

    # Diagnostic 2: the (round-1) reward model against gold on held-out (test) responses it never saw.
    rm_dir = str(ctx.path("reward_model"))
    fmt = ctx.prompt_format(rm_dir)
    rm = load_reward(rm_dir, ctx.device, m.dtype, m.trust_remote_code)
    test_prompts = {e.qid: p for e, p in zip(test, prompts)}
    judged = [s for s in samples if s["model"] in ("teacher_maj", "student_sft", "student_rl")]
    scores = score_pairs(rm, fmt.pairs(test_prompts, judged), fmt.pad_id, packed=True)
    for s, sc in zip(judged, scores):
        s["rm_score"] = sc
    correct = [int(s["correct"]) for s in judged]
    rm_acc = sum((sc > 0) == bool(c) for sc, c in zip(scores, correct)) / max(1, len(judged))
    # ... and within a question: can it pick the SFT student's right answers among its own K samples (what RL uses)?
    rank = rank_teacher = None
    if cfg.best_of_k:
        sampler = ctx.local_sampler(students["student_sft"], cfg.batch_size)
        texts = [[g.text for g in per_q] for per_q in sample_k(sampler, prompts, [1.0], cfg.max_new_tokens,
                                                                ctx.cfg.seed * 7 + 1000, n=cfg.best_of_k,
                                                                desc="eval best-of-K")]
        rows = [{"qid": e.qid, "text": t} for e, ts in zip(test, texts) for t in ts]
        flat = iter(score_pairs(rm, fmt.pairs(test_prompts, rows), fmt.pad_id, packed=True))
        rank = ranking(task, test, [[(next(flat), t) for t in ts] for ts in texts])
        if m.teacher_backend == "hf":  # ... and the teacher's own likelihood on the same samples, for comparison
            t_fmt = ctx.prompt_format(m.teacher)
            judge = LikelihoodRM(ctx.causal_lm(m.teacher).eval())  # scale 1, bias 0: the mean token log-prob
            flat = iter(score_pairs(judge, t_fmt.pairs(test_prompts, rows), t_fmt.pad_id, packed=True))
            rank_teacher = ranking(task, test, [[(next(flat), t) for t in ts] for ts in texts])

    # Diagnostic 3: the rl stage's reward-hacking watch (validation gold accuracy vs reward-model score), all rounds.
    watch = []
    for r in range(1, rounds + 1):
        if ctx.round_path("rl_metrics.jsonl", r).exists():
            watch += [row for row in read_jsonl(ctx.round_path("rl_metrics.jsonl", r))
                      if "watch_val_gold_accuracy" in row]
    steps = [row["step"] for row in watch]
    gold_curve = [row["watch_val_gold_accuracy"] for row in watch]
    rm_curve = [row["watch_val_rm_score"] for row in watch]
    # Diagnostic 4: how well the gold-free selection signal (pseudo-label agreement) tracks validation gold accuracy.
    selection = [read_json(ctx.round_path("rl_selection.json", r)) for r in range(1, rounds + 1)
                 if ctx.round_path("rl_selection.json", r).exists()]
    agreement = {st: a for sel in selection for st, a in zip(sel["steps"], sel["agreement"])}
    common = [i for i, st in enumerate(steps) if st in agreement]
    track = spearman([agreement[steps[i]] for i in common], [gold_curve[i] for i in common])

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
            "ranking_student_sft": rank,  # best-of-K by the reward model vs maj@K, pass@K, a random sample
            "ranking_student_sft_teacher_likelihood": rank_teacher,  # the same, ranked by the teacher's mean log-prob
            "rl_watch": {"step": steps, "val_gold_accuracy": gold_curve, "val_rm_score": rm_curve},
            "rl_divergence_step": divergence_step(steps, rm_curve, gold_curve) if len(steps) > 1 else None,
            "rl_selection": selection,  # per round: the kept step and why (no gold used)
            "selection_vs_gold_spearman": track,  # over the checks where the watch also ran
        },
        "rl": {"algo": ctx.cfg.rl.algo, "reward": ctx.cfg.rl.reward, "rounds": rounds},
    }
    write_json(ctx.path("results.json"), results)
    write_report(ctx.run_dir, results, ctx.cfg)
    write_model_cards(ctx.run_dir, ctx.cfg, results)
    vs_teacher = f" vs teacher {acc['teacher_greedy']:.1%}" if "teacher_greedy" in acc else ""
    return f"RL student {acc['student_rl']:.1%} vs SFT {acc['student_sft']:.1%}{vs_teacher} (greedy, {cfg.split})"
