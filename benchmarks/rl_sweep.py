"""Validation sweep of RL settings from one finished run: how the rl defaults were chosen.

    python benchmarks/rl_sweep.py BASE_RUN_DIR OUT_DIR VARIANTS.json [--task tiny-arith]

VARIANTS.json maps a name to dotted overrides ({"k02": {"rl.kl_coef": "0.2"}}). Each variant starts from a
copy of BASE_RUN_DIR's finished stages that it shares (`pipeline.seed_from`), reruns the rest, and is
scored on the *validation* split (student only). One JSON line per variant goes to OUT_DIR/sweep.jsonl:
SFT and RL greedy accuracy, the reward-hacking watch curve and its divergence step, the teacher and the commit
measured.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from provenance import git_commit, teacher_of  # benchmarks/provenance.py

from rewdistill.config_files import load_config
from rewdistill.pipeline import run_pipeline, seed_from


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("variants", type=Path)
    ap.add_argument("--task", default="tiny-arith")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, over in json.loads(args.variants.read_text()).items():
        cfg = load_config(None, {"task.name": args.task, "evaluate.split": "validation", "task.n_test": "200",
                                 "evaluate.teacher": "false", "evaluate.best_of_k": "0", **over})
        d = args.out / name
        if not (d / "manifest.json").exists():
            seed_from(args.base, d, cfg)
        t0 = time.time()
        run_pipeline(cfg, d)
        r = json.loads((d / "results.json").read_text())
        line = {"variant": name, "overrides": over, "split": "validation", "sft": r["accuracy"]["student_sft"],
                "rl": r["accuracy"]["student_rl"], "divergence_step": r["diagnostics"]["rl_divergence_step"],
                "watch_steps": r["diagnostics"]["rl_watch"]["step"],
                "watch_gold": r["diagnostics"]["rl_watch"]["val_gold_accuracy"],
                "selection": r["diagnostics"].get("rl_selection"),
                "selection_vs_gold_spearman": r["diagnostics"].get("selection_vs_gold_spearman"),
                "rl_seconds": r["seconds"].get("rl"), "seconds": round(time.time() - t0),
                "teacher": teacher_of(d), "commit": git_commit()}
        print(json.dumps(line), flush=True)
        with open(args.out / "sweep.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
