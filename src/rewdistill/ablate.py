"""`rewdistill ablate`: the paper's comparison over several seeds, one run directory per (seed, variant).

Per seed, the `rm` variant (the paper's method) runs the whole pipeline; every other variant starts from a
copy of its finished stages (`pipeline.seed_from`) and reruns only what its config changes. `sft_only` is
the SFT student of that same run (data distillation alone, the paper's "w/o R").
"""
from __future__ import annotations

import logging
import statistics
from pathlib import Path

from rewdistill.config import ConfigError
from rewdistill.config_files import load_config
from rewdistill.diagnostics import paired_bootstrap
from rewdistill.io import read_json, read_jsonl, write_json, write_text_atomic
from rewdistill.pipeline import run_pipeline, seed_from

logger = logging.getLogger("rewdistill")

VARIANTS: dict[str, dict[str, str] | None] = {
    "sft_only": None,  # the SFT student of the rm run
    "rm": {},  # ours (the defaults): GRPO on the likelihood reward model's vote (teacher + student data)
    # the paper's reward model: a scalar head on the SFT student, with the settings it shipped with
    "rm_scalar": {"reward_model.kind": "scalar", "reward_model.init": "sft", "reward_model.lr": "1e-3",
                  "reward_model.epochs": "2"},
    # SFT-only given the RL stage's cost as more SFT epochs instead (no RL): a compute-matched data-only baseline.
    # The default RL stage (GRPO x 8, 40 steps) took about as long as 3.4 tiny-arith SFT epochs and 2.4 tiny-choice
    # ones (benchmarks/results/rl_recipe_validation_*.jsonl): 4 more epochs than the run's own, at least RL's cost
    "sft_matched": {"sft.epochs": "+4", "rl.steps": "0"},
    "rm_teacher_only": {"reward_model.use_student_samples": "false"},
    "teacher_judge": {"rl.reward": "teacher-judge"},
    "pseudo_label": {"rl.reward": "pseudo-label"},
    "gold": {"rl.reward": "gold"},  # ORACLE: trains on gold answers; an upper bound, not a method
    "teacher_kl": {"rl.reward": "teacher-kl"},  # on-policy distillation from the SFT student, same RL budget
    "rm_teacher_kl": {"rl.reward": "rm+teacher-kl"},  # ours + the teacher's per-token signal
    # more, on request with --variants
    "hybrid": {"rl.reward": "hybrid"},
    "rm_grpo": {"rl.reward": "rm"},  # the default recipe on each response's reward-model score instead of its vote
    "rm_rloo": {"rl.algo": "rloo"},
    "rm_2rounds": {"rl.rounds": "2"},
    # the former default (until issue 24's recipe): PPO on each response's reward-model score, as in the paper
    "rm_ppo": {"rl.reward": "rm", "rl.algo": "ppo", "rl.group_size": "1", "rl.rollout_batch": "64", "rl.steps": "20",
               "rl.lr": "5e-5", "rl.kl_coef": "0.2"},
    "rm_teacher_kl_gated": {"rl.reward": "rm+teacher-kl", "rl.teacher_kl_gate": "vote-share"},
}
DEFAULT_VARIANTS = ["sft_only", "rm", "rm_scalar", "teacher_judge", "sft_matched", "pseudo_label", "teacher_kl",
                    "rm_teacher_kl", "gold"]
LABELS = {
    "sft_only": "SFT only (data distillation, w/o R)",
    "rm": "ours: GRPO on the likelihood RM's vote (teacher + student responses)",
    "rm_scalar": "the paper's scalar-head RM",
    "sft_matched": "SFT only, more epochs for the RL stage's cost",
    "rm_teacher_only": "RM on teacher responses only",
    "teacher_judge": "teacher-judge reward",
    "pseudo_label": "pseudo-label (majority vote) reward",
    "gold": "gold reward (ORACLE upper bound)",
    "hybrid": "RM + pseudo-label (hybrid)",
    "rm_grpo": "GRPO on the RM score (not its vote)",
    "rm_rloo": "ours with RLOO",
    "rm_2rounds": "ours, 2 rounds",
    "teacher_kl": "on-policy distillation (teacher per-token KL)",
    "rm_teacher_kl": "ours + teacher per-token KL (hybrid)",
    "rm_teacher_kl_gated": "hybrid, gated by the teacher's vote share",
    "rm_ppo": "PPO on the RM score (the former default)",
}


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def run_seeds_in_parallel(config: str | None, overrides: dict[str, str], seeds: list[int], variants: list[str],
                          out: Path, jobs: int) -> None:
    """One `rewdistill ablate --seeds s` subprocess per seed, `jobs` at a time, the CPU threads split among
    them (tiny models use cores better as parallel single-thread jobs). Seeds write to separate folders."""
    import os
    import subprocess
    import sys

    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    base = [sys.executable, "-m", "rewdistill.cli", "ablate", "--run-dir", str(out), "--variants", *variants]
    base += ["--config", config] if config else []
    for key, value in overrides.items():
        base += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    out.mkdir(parents=True, exist_ok=True)
    running: list[tuple[int, subprocess.Popen]] = []
    pending = list(seeds)
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            log = out / f"seed{seed}.log"
            logger.info(f"== ablation seed {seed}: started as a job ({threads} thread(s)), log {log}")
            with open(log, "w") as f:
                running.append((seed, subprocess.Popen([*base, "--seeds", str(seed)], env=env, stdout=f, stderr=f)))
        seed, proc = running.pop(0)
        if proc.wait() != 0:
            raise RuntimeError(f"ablation seed {seed} failed (exit {proc.returncode}); see {out / f'seed{seed}.log'}")


def relative_to(cfg, overrides: dict[str, str]) -> dict[str, str]:
    """Overrides with a "+N" value made absolute: N more than `cfg`'s value of that key (sft_matched's epochs)."""
    out = {}
    for key, value in overrides.items():
        if value.startswith("+"):
            section, name = key.split(".")
            value = str(getattr(getattr(cfg, section), name) + int(value[1:]))
        out[key] = value
    return out


def run_ablation(config: str | None, overrides: dict[str, str], seeds: list[int], variants: list[str],
                 out: Path, jobs: int = 1) -> dict:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if jobs > 1 and len(seeds) > 1:
        run_seeds_in_parallel(config, overrides, seeds, variants, out, jobs)  # then the loop below only reads
    per_seed: dict[str, list[float]] = {v: [] for v in variants}
    per_question: dict[str, list[dict[str, bool]]] = {v: [] for v in variants}  # per seed: qid -> correct
    cost: dict[str, list[dict]] = {v: [] for v in variants if v != "sft_only"}  # per seed: rl seconds and tokens
    teacher, maj, split = [], [], "test"
    for seed in seeds:
        base = {**overrides, "seed": str(seed)}
        rm_cfg = load_config(config, base)
        rm_dir = out / f"seed{seed}" / "rm"
        logger.info(f"== ablation seed {seed}: rm (full pipeline) in {rm_dir}")
        run_pipeline(rm_cfg, rm_dir)
        res = read_json(rm_dir / "results.json")
        split = res["split"]
        teacher.append(res["accuracy"]["teacher_greedy"])
        maj.append(res["accuracy"]["teacher_maj_at_k"])
        for v in variants:
            if v in ("sft_only", "rm"):
                per_seed[v].append(res["accuracy"]["student_sft" if v == "sft_only" else "student_rl"])
                per_question[v].append(greedy_correct(rm_dir, "student_sft" if v == "sft_only" else "student_rl"))
                continue
            extra = {"evaluate.teacher": "false"}
            if not any(k.startswith("reward_model.") for k in VARIANTS[v]):  # same reward model as rm's run: its
                extra["evaluate.best_of_k"] = "0"  # ranking diagnostic would repeat rm's, not worth the sampling
            cfg = load_config(config, {**base, **relative_to(rm_cfg, VARIANTS[v]), **extra})
            vdir = out / f"seed{seed}" / v
            if not (vdir / "manifest.json").exists():
                copied = seed_from(rm_dir, vdir, cfg)
                logger.info(f"== ablation seed {seed}: {v} in {vdir} (reusing {', '.join(copied) or 'nothing'})")
            run_pipeline(cfg, vdir)
            per_seed[v].append(read_json(vdir / "results.json")["accuracy"]["student_rl"])
            per_question[v].append(greedy_correct(vdir, "student_rl"))
        for v in variants:
            if v != "sft_only":
                cost[v].append(rl_cost(rm_dir if v == "rm" else out / f"seed{seed}" / v))
    summary = {
        "task": rm_cfg.task.name,
        "split": split,
        "seeds": seeds,
        "teacher_greedy": dict(zip(["mean", "std"], mean_std(teacher)), per_seed=teacher),
        "teacher_maj_at_k": dict(zip(["mean", "std"], mean_std(maj)), per_seed=maj),
        "variants": {v: dict(zip(["mean", "std"], mean_std(xs)), per_seed=xs) for v, xs in per_seed.items()},
        "rl_cost": {v: {k: statistics.fmean(c[k] for c in per) for k in per[0]} for v, per in cost.items() if per},
    }
    if "sft_only" in variants:  # paired difference to SFT-only on the same questions, per seed, 95% bootstrap
        base = per_question["sft_only"]
        summary["paired_vs_sft_only"] = {
            v: [paired_bootstrap([q[k] for k in sorted(q)], [b[k] for k in sorted(q)], seed=i)
                for i, (q, b) in enumerate(zip(per_question[v], base))]
            for v in variants if v != "sft_only"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation.json", summary)
    write_text_atomic(out / "ablation.md", format_ablation(summary) + "\n\n![ablation](ablation.png)\n")
    plot_ablation(summary, out / "ablation.png")
    return summary


def rl_cost(run_dir: Path) -> dict[str, float]:
    """What a run's RL cost, over all its rounds: wall seconds, student rollout tokens, teacher-scored tokens."""
    manifest = read_json(run_dir / "manifest.json")["stages"]
    seconds = sum(rec.get("seconds") or 0 for key, rec in manifest.items() if key.split("@")[0] == "rl")
    rollout = teacher = 0.0
    for path in [run_dir / "rl_metrics.jsonl", *sorted(run_dir.glob("round*/rl_metrics.jsonl"))]:
        rows = [r for r in read_jsonl(path) if "reward" in r] if path.exists() else []
        rollout += float(rows[-1].get("rollout_tokens", 0)) if rows else 0.0  # cumulative within a round
        teacher += float(sum(r.get("teacher_tokens", 0) for r in rows))
    return {"rl_seconds": seconds, "rollout_tokens": rollout, "teacher_tokens": teacher}


def greedy_correct(run_dir: Path, model: str) -> dict[str, bool]:
    """qid -> whether `model`'s greedy answer was right, from a run's eval_samples.jsonl."""
    return {r["qid"]: bool(r["correct"]) for r in read_jsonl(run_dir / "eval_samples.jsonl")
            if r["model"] == model and r["temperature"] == 0.0}


def format_ablation(s: dict) -> str:
    n = len(s["seeds"])
    pct = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
    lines = [f"Greedy {s['split']} accuracy (%) on {s['task']}, mean ± std over {n} seed(s) "
             f"({', '.join(map(str, s['seeds']))})",
             "", "| Variant | Accuracy | Per seed |", "|---|---:|---|"]
    rows = [("Teacher, greedy", s["teacher_greedy"]), ("Teacher, maj@K", s["teacher_maj_at_k"])]
    rows += [(f"{LABELS[v]} (`{v}`)", d) for v, d in s["variants"].items()]
    for name, d in rows:
        lines.append(f"| {name} | {pct(d)} | {' / '.join(f'{100 * x:.1f}' for x in d['per_seed'])} |")
    paired = s.get("paired_vs_sft_only")
    if paired:
        lines += ["", "Paired difference to SFT-only on the same questions (points), per seed, with a 95% bootstrap "
                  "interval over questions:", "", "| Variant | Per seed: difference [95% interval] |", "|---|---|"]
        for v, per in paired.items():
            cells = " / ".join(f"{100 * p['diff']:+.1f} [{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}]" for p in per)
            lines.append(f"| `{v}` | {cells} |")
    cost = s.get("rl_cost")
    if cost:
        lines += ["", "RL cost per run (mean over seeds; all rounds):", "",
                  "| Variant | RL wall time (s) | Student rollout tokens | Teacher-scored tokens |",
                  "|---|---:|---:|---:|"]
        for v, c in cost.items():
            lines.append(f"| `{v}` | {c['rl_seconds']:.0f} | {c['rollout_tokens']:,.0f} | {c['teacher_tokens']:,.0f} |")
    return "\n".join(lines)


def plot_ablation(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(s["variants"])
    means = [100 * s["variants"][v]["mean"] for v in names]
    stds = [100 * s["variants"][v]["std"] for v in names]
    colors = ["#8c8c8c" if v == "sft_only" else "#c44e52" if v == "gold" else "#4c72b0" for v in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.6))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=colors)
    for x, (m, sd) in enumerate(zip(means, stds)):
        ax.text(x, m + sd + 1.5, f"{m:.1f}", ha="center", fontsize=8)  # above the error bar
    ax.axhline(100 * s["teacher_greedy"]["mean"], ls="--", color="k", lw=1, label="teacher greedy")
    ax.axhline(100 * s["teacher_maj_at_k"]["mean"], ls=":", color="k", lw=1, label="teacher maj@K")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(f"{s['split']} accuracy (%)")
    ax.set_title(f"{s['task']}: mean ± std over {len(s['seeds'])} seeds")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
