"""The run's report: a results table (markdown and console) and plots (PNG)."""
from __future__ import annotations

from pathlib import Path

from rewdistill.io import read_jsonl_prefix, write_text_atomic

ROWS = [
    ("teacher_greedy", "Teacher, greedy"),
    ("teacher_maj_at_k", "Teacher, maj@K"),
    ("student_base", "Student base, greedy"),
    ("student_sft", "Student after SFT (data distillation), greedy"),
    ("student_rl", "Student after RL (data + reward distillation), greedy"),
]


def table_rows(results: dict) -> list[tuple[str, float]]:
    acc = results["accuracy"]
    out = []
    for key, label in ROWS:
        if key in acc:
            out.append((label.replace("maj@K", f"maj@{results.get('maj_k', 'K')}"), acc[key]))
    return out


def format_table(results: dict) -> str:
    lines = [f"| Model | {results.get('split', 'test').capitalize()} accuracy |", "|---|---:|"]
    lines += [f"| {name} | {100 * a:.1f}% |" for name, a in table_rows(results)]
    return "\n".join(lines)


def plot_rl(run_dir: Path, rounds: int = 1) -> str | None:
    """rl_curves.png: reward, KL, pseudo-label agreement per RL step, and the reward-hacking watch (every round)."""
    paths = [run_dir / "rl_metrics.jsonl"] + [run_dir / f"round{r}" / "rl_metrics.jsonl" for r in range(2, rounds + 1)]
    rows = [r for path in paths for r in read_jsonl_prefix(path)]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"reward": "reward (rollouts)", "kl": "KL(pi || SFT) per response",
              "pseudo_label_agreement": "agreement with pseudo-label"}
    fig, axes = plt.subplots(1, len(series) + 1, figsize=(4 * (len(series) + 1), 3))
    for ax, (key, title) in zip(axes, series.items()):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    watch = [r for r in rows if "watch_val_gold_accuracy" in r]
    ax = axes[-1]
    ax.set_title("watch: validation subset (greedy)")
    ax.set_xlabel("RL step")
    if watch:
        steps = [r["step"] for r in watch]
        ax.plot(steps, [100 * r["watch_val_gold_accuracy"] for r in watch], marker=".", color="#4c72b0")
        ax.set_ylabel("gold accuracy (%)", color="#4c72b0")
        ax2 = ax.twinx()
        ax2.plot(steps, [r["watch_val_rm_score"] for r in watch], marker=".", color="#dd8452")
        ax2.set_ylabel("reward-model score", color="#dd8452")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "rl_curves.png", dpi=110)
    plt.close(fig)
    return "rl_curves.png"


def plot_accuracy(run_dir: Path, results: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(results)
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [n.split(",")[0].replace(" (data distillation)", "").replace(" (data + reward distillation)", "")
             + ("\n" + n.split(", ")[-1] if ", " in n else "") for n, _ in rows]
    ax.barh(names[::-1], [100 * a for _, a in rows][::-1], color="#4c72b0")
    for i, (_, a) in enumerate(rows[::-1]):
        ax.text(100 * a + 0.5, i, f"{100 * a:.1f}%", va="center", fontsize=8)
    ax.set_xlabel(f"{results['split']} accuracy on {results['task']} (%)")
    ax.set_xlim(0, 105)
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy.png", dpi=110)
    plt.close(fig)
    return "accuracy.png"


def write_report(run_dir: Path, results: dict, cfg) -> None:
    d = results["diagnostics"]
    acc_png = plot_accuracy(run_dir, results)
    rl_png = plot_rl(run_dir, cfg.rl.rounds)
    fmt = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    text = [
        f"# rewdistill report: {results['task']} (seed {results['seed']})",
        "",
        f"Greedy accuracy on {results['n_test']} held-out {results['split']} questions (gold answers).",
        "",
        format_table(results),
        "",
        f"![accuracy]({acc_png})",
        "",
        "## Diagnostics",
        "",
        f"- Pseudo-label accuracy vs gold, kept training questions: {fmt(d['pseudo_label_accuracy_kept'])} "
        f"({d['questions_kept']}/{d['questions_total']} kept); all questions: {fmt(d['pseudo_label_accuracy_all'])}",
        f"- Reward model vs gold on {d['reward_model_eval_responses']} held-out test responses: accuracy "
        f"{fmt(d['reward_model_accuracy'])}, AUC {fmt(d['reward_model_auc'])}",
    ]
    rank = d.get("ranking_student_sft")
    if rank:
        text.append(f"- Ranking the SFT student's own {rank['k']} samples per question (T=1): best-of-{rank['k']} by "
                    f"the reward model {fmt(rank['rm_best_of_k'])}, majority vote {fmt(rank['maj_at_k'])}, a random "
                    f"sample {fmt(rank['sample_mean'])}, pass@{rank['k']} {fmt(rank['pass_at_k'])}; AUC within a "
                    f"question {fmt(rank['rm_auc_within'])} ({rank['mixed_questions']} questions with right and wrong "
                    "samples). RL can only climb a reward model whose best-of-K beats a random sample.")
    teach = d.get("ranking_student_sft_teacher_likelihood")
    if rank and teach:
        text.append(f"- The same samples ranked by the teacher's mean token log-prob: best-of-{teach['k']} "
                    f"{fmt(teach['rm_best_of_k'])}, AUC within a question {fmt(teach['rm_auc_within'])} (reward model: "
                    f"{fmt(rank['rm_best_of_k'])}, {fmt(rank['rm_auc_within'])}).")
    if rl_png:
        div = d.get("rl_divergence_step")
        watch = d.get("rl_watch", {}).get("step", [])
        note = ("no watch (rl.watch_every 0)" if not watch else
                f"reward-model score and validation gold accuracy diverge at step {div}" if div is not None else
                "reward-model score and validation gold accuracy did not diverge")
        rl = results.get("rl", {})
        text += ["",
                 f"## RL ({rl.get('algo', 'ppo')}, reward {rl.get('reward', 'rm')}, {rl.get('rounds', 1)} round(s))",
                 "", f"![rl curves]({rl_png})", "", f"Reward-hacking watch: {note}."]
        for r, sel in enumerate(d.get("rl_selection") or [], start=1):
            track = d.get("selection_vs_gold_spearman")
            text += ["", f"Checkpoint (round {r}, chosen without gold): kept step {sel['kept_step']}: {sel['why']}"
                     + ("." if track is None else f". Pseudo-label agreement vs validation gold accuracy over the "
                        f"watched steps: Spearman {track:.2f}.")]
    text += ["", "## Config", "", "```yaml", _yaml(cfg), "```", ""]
    write_text_atomic(run_dir / "report.md", "\n".join(text))


def _yaml(cfg) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(), sort_keys=False).strip()
