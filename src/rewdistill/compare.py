"""`rewdistill report RUN_DIR [RUN_DIR ...]`: runs side by side. One table of results and diagnostics, the config
keys whose values differ between the runs, and one plot (accuracy of each model, grouped by run)."""
from __future__ import annotations

from pathlib import Path

import yaml

from rewdistill.io import read_json, write_text_atomic
from rewdistill.report import ROWS

DIAGNOSTICS = [  # (label, getter over results.json, percent?)
    ("pseudo-labels right (kept questions)", lambda r: r["diagnostics"].get("pseudo_label_accuracy_kept"), True),
    ("reward model AUC (test responses)", lambda r: r["diagnostics"].get("reward_model_auc"), False),
    ("SFT student: RM best-of-K", lambda r: (r["diagnostics"].get("ranking_student_sft") or {}).get("rm_best_of_k"),
     True),
    ("SFT student: maj@K", lambda r: (r["diagnostics"].get("ranking_student_sft") or {}).get("maj_at_k"), True),
    ("SFT student: mean sample", lambda r: (r["diagnostics"].get("ranking_student_sft") or {}).get("sample_mean"),
     True),
    ("RL reward-hacking divergence step", lambda r: r["diagnostics"].get("rl_divergence_step"), False),
    ("RL step kept", lambda r: ((r["diagnostics"].get("rl_selection") or [{}])[-1]).get("kept_step"), False),
    ("wall time (min)", lambda r: sum(v or 0 for v in r.get("seconds", {}).values()) / 60, False),
]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested config dict -> {dotted key: value}."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_runs(run_dirs: list[Path]) -> list[tuple[str, dict, dict]]:
    """(name, results.json, flattened config) of each finished run; the name is the directory's, made unique."""
    out, names = [], set()
    for d in run_dirs:
        name = d.name if d.name not in names else str(d)
        names.add(name)
        out.append((name, read_json(d / "results.json"), flatten(yaml.safe_load((d / "config.yaml").read_text()))))
    return out


def _cell(v, pct: bool) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def compare_table(runs: list[tuple[str, dict, dict]]) -> str:
    names = [n for n, _, _ in runs]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| task, split (questions) | " + " | ".join(
        f"{r['task']}, {r['split']} ({r['n_test']})" for _, r, _ in runs) + " |")
    for key, label in ROWS:
        if any(key in r["accuracy"] for _, r, _ in runs):
            lines.append(f"| {label} | " + " | ".join(_cell(r["accuracy"].get(key), True) for _, r, _ in runs) + " |")
    for label, get, pct in DIAGNOSTICS:
        lines.append(f"| {label} | " + " | ".join(_cell(get(r), pct) for _, r, _ in runs) + " |")
    return "\n".join(lines)


def config_diff(runs: list[tuple[str, dict, dict]]) -> dict[str, list]:
    """Config keys whose values are not the same in every run -> the value in each run (None when absent)."""
    keys = sorted(set().union(*(c.keys() for _, _, c in runs)))
    return {k: [c.get(k) for _, _, c in runs] for k in keys if len({repr(c.get(k)) for _, _, c in runs}) > 1}


def format_compare(runs: list[tuple[str, dict, dict]]) -> str:
    out = ["## Results", "", compare_table(runs), "", "## Config keys that differ", ""]
    diff = config_diff(runs)
    if not diff:
        out.append("(none: the runs share one config)")
    else:
        out += ["| key | " + " | ".join(n for n, _, _ in runs) + " |", "|---|" + "---|" * len(runs)]
        out += [f"| `{k}` | " + " | ".join(f"`{v}`" for v in vals) + " |" for k, vals in diff.items()]
    return "\n".join(out)


def plot_compare(runs: list[tuple[str, dict, dict]], path: Path) -> None:
    """Grouped bars: each model's accuracy (%), one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, label) for k, label in ROWS if any(k in r["accuracy"] for _, r, _ in runs)]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(keys), 3.8))
    for j, (name, r, _) in enumerate(runs):
        xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(keys))]
        ys = [100 * r["accuracy"].get(k, float("nan")) for k, _ in keys]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(keys)), [label.split(" (")[0].replace("Student after ", "").replace(", greedy", "")
                                     for _, label in keys], rotation=15, ha="right", fontsize=8)
    splits = sorted({f"{r['task']} {r['split']}" for _, r, _ in runs})
    ax.set_ylabel(f"accuracy (%), {', '.join(splits)}")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, title="run", title_fontsize=8)
    ax.set_title("Runs compared: greedy accuracy (maj@K for the teacher's vote)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_compare(run_dirs: list[Path], out: Path) -> str:
    runs = load_runs(run_dirs)
    text = format_compare(runs)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.md", "# Runs compared\n\n" + text + "\n\n![compare](compare.png)\n")
    plot_compare(runs, out / "compare.png")
    return text
