"""How much labelled data does the reward model need? Validation sweep of its training rows, on one run's data.

    python benchmarks/rm_data_sweep.py BASE_RUN OUT_DIR [--variants keep drop half] [--out results.json]

Each variant trains the run's reward model (its config, the reward-model stage's own code) on a different subset of
BASE_RUN's labelled teacher + student responses, in OUT_DIR/<variant>:
  keep: every row (each variant sets `reward_model.duplicates keep`, so the stage itself drops nothing);
  drop: one copy of each distinct (question, response text), teacher rows first (most are repeats: a teacher at
  low temperature repeats itself); half: a random half of the rows (seed 0).
Then `rm_ranking.py`'s leading indicator on the validation split: the SFT student's 8 answers per question, ranked
by each reward model (best-of-8, AUC within a question), beside the teacher's untrained likelihood. Writes one JSON
with the training seconds and rows of each variant, the commit measured and the teacher. No gold is read for training.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, teacher_of  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.io import read_jsonl, write_jsonl  # noqa: E402
from rewdistill.labels import distinct  # noqa: E402
from rewdistill.stages import reward_model  # noqa: E402
from rewdistill.stages.common import Ctx  # noqa: E402


def subset(teacher: list[dict], student: list[dict], variant: str) -> tuple[list[dict], list[dict]]:
    """The teacher and student rows a variant trains on."""
    if variant == "keep":
        return teacher, student
    if variant == "drop":  # the stage's own rule (labels.distinct), teacher rows first
        kept_teacher = distinct(teacher)
        return kept_teacher, distinct(teacher + student)[len(kept_teacher):]
    if variant == "half":
        rng = random.Random(0)
        return [r for r in teacher if rng.random() < 0.5], [r for r in student if rng.random() < 0.5]
    raise SystemExit(f"unknown variant {variant!r}: keep, drop or half")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--variants", nargs="+", default=["keep", "drop", "half"])
    ap.add_argument("--out", type=Path, required=True, help="the JSON to write")
    args = ap.parse_args()
    cfg = load_config(str(args.base / "config.yaml"), {"reward_model.duplicates": "keep"})  # the subsets decide
    teacher, student = read_jsonl(args.base / "teacher_labelled.jsonl"), read_jsonl(args.base / "student_samples.jsonl")
    trained = {}
    for v in args.variants:
        d = args.out_dir / v
        t, s = subset(teacher, student, v)
        if not (d / "reward_model").exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            for f in ["questions.jsonl", "config.yaml"]:
                shutil.copy2(args.base / f, d / f)
            shutil.copytree(args.base / "student_sft", d / "student_sft")
            write_jsonl(d / "teacher_labelled.jsonl", t)
            write_jsonl(d / "student_samples.jsonl", s)
            t0 = time.time()
            reward_model.run(Ctx(cfg, d, stage_hash="rm-data-sweep"))
            (d / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
        trained[v] = {"teacher_rows": len(t), "student_rows": len(s),
                      "seconds": float((d / "seconds.txt").read_text())}
    ranking = args.out_dir / "rm_ranking.json"
    subprocess.run([sys.executable, str(Path(__file__).parent / "rm_ranking.py"), str(args.base), "--out", str(ranking),
                    "--rm", *[f"{v}={args.out_dir / v / 'reward_model'}" for v in args.variants]], check=True)
    out = {"base": str(args.base), "task": cfg.task.name, "seed": cfg.seed, "split": "validation",
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "commit": git_commit(),
           "teacher": teacher_of(args.base), "variants": trained,
           "ranking": json.loads(ranking.read_text())["signals"]}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for v, r in trained.items():
        sig = out["ranking"][v]
        print(f"{v:6s} {r['teacher_rows']:6d} + {r['student_rows']:5d} rows  {r['seconds']:6.1f} s  "
              f"best-of-8 {sig['rm_best_of_k']:.3f}  AUC within {sig['rm_auc_within']:.3f}")


if __name__ == "__main__":
    main()
