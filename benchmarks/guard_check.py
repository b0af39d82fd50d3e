"""Does the gold-free selection check see what RL does to gold accuracy? A diagnostic over finished sweep runs.

    python benchmarks/guard_check.py OUT.json SWEEP_DIR/VARIANT [SWEEP_DIR/VARIANT ...]

Each run is a `benchmarks/rl_sweep.py` variant scored on the validation split. The rl stage's watch reads gold on
the first `rl.watch_n` validation questions; the selection check (no gold) scores the policy on the last
`task.n_selection` ones. Gold is read here, for the report only: from the run's eval_samples.jsonl, the SFT and RL
students' greedy accuracy on each of the two halves, so that a gold-free score can be compared with gold on its own
questions. One row per run: the check's curves (`select_agreement`, `select_teacher_vote` where logged), the watch
curve, the gold of each half before and after RL, and the commit and teacher of the sweep line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rewdistill.diagnostics import spearman


def half_accuracy(rows: list[dict], model: str, qids: set[str]) -> float:
    """Greedy gold accuracy of `model` on the questions `qids`, from a run's eval_samples rows."""
    hits = [r["correct"] for r in rows if r["model"] == model and r["qid"] in qids]
    return sum(hits) / len(hits)


def check_run(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "rl_metrics.jsonl").read_text().splitlines()]
    checks = [r for r in rows if "select_agreement" in r]
    watch = [r for r in rows if "watch_val_gold_accuracy" in r]
    selection = {json.loads(line)["qid"] for line in (run / "selection_questions.jsonl").read_text().splitlines()}
    evals = [json.loads(line) for line in (run / "eval_samples.jsonl").read_text().splitlines()]
    evaluated = {r["qid"] for r in evals}
    watched = evaluated - selection  # the first validation questions: the watch's (rl.watch_n of them)
    sweep = {}
    for line in (run.parent / "sweep.jsonl").read_text().splitlines():
        if json.loads(line)["variant"] == run.name:
            sweep = json.loads(line)
    return {
        "variant": run.name, "overrides": sweep.get("overrides"), "commit": sweep.get("commit"),
        "teacher": sweep.get("teacher"),
        "check_steps": [r["step"] for r in checks],
        "select_agreement": [r["select_agreement"] for r in checks],
        "select_teacher_vote": [r["select_teacher_vote"] for r in checks] if all(
            "select_teacher_vote" in r for r in checks) else None,
        "watch_steps": [r["step"] for r in watch], "watch_gold": [r["watch_val_gold_accuracy"] for r in watch],
        "n_watch_half": len(watched), "n_selection_half": len(selection & evaluated),
        "gold_watch_half": {m: half_accuracy(evals, m, watched) for m in ["student_sft", "student_rl"]},
        "gold_selection_half": {m: half_accuracy(evals, m, selection) for m in ["student_sft", "student_rl"]},
    }


def main() -> None:
    out, runs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    result = {"what": __doc__.strip().splitlines()[0], "split": "validation", "date": time.strftime("%Y-%m-%d"),
              "runs": [check_run(r) for r in runs]}
    runs_ = result["runs"]
    d_check = [r["select_agreement"][-1] - r["select_agreement"][0] for r in runs_]
    d_own = [r["gold_selection_half"]["student_rl"] - r["gold_selection_half"]["student_sft"] for r in runs_]
    d_watch = [r["gold_watch_half"]["student_rl"] - r["gold_watch_half"]["student_sft"] for r in runs_]
    result["spearman_over_runs"] = {  # how RL's change of one measure ranks the runs against another's
        "agreement_change_vs_gold_change_on_its_questions": spearman(d_check, d_own),
        "gold_change_on_the_watchs_questions_vs_on_the_checks": spearman(d_watch, d_own),
    }
    for key in ["commit", "teacher"]:  # the runs' own (each sweep line names the commit and teacher it measured)
        result[key] = " / ".join(dict.fromkeys(str(r[key]) for r in result["runs"]))
    for r in result["runs"]:
        w, s = r["gold_watch_half"], r["gold_selection_half"]
        print(f"{r['variant']}: watch half {w['student_sft']:.2f} -> {w['student_rl']:.2f}, selection half "
              f"{s['student_sft']:.2f} -> {s['student_rl']:.2f}, agreement {r['select_agreement'][0]:.3f} -> "
              f"{r['select_agreement'][-1]:.3f}")
    print(result["spearman_over_runs"])
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
