"""Validation sweep of SFT settings on one finished run's data: how the sft defaults were chosen.

    python benchmarks/sft_sweep.py BASE_RUN OUT_DIR VARIANTS.json

VARIANTS.json maps a name to dotted overrides of the SFT section ({"e12": {"sft.epochs": "12"}}). Each variant
fine-tunes the student on BASE_RUN's pseudo-labelled teacher responses (copied into OUT_DIR/<name>) and is scored
by its greedy accuracy on the validation split. One JSON line per variant goes to OUT_DIR/sweep.jsonl, with the
SFT seconds, the teacher and the commit measured. A variant directory that already holds a student_sft and a
seconds.txt is only scored; its source.txt (if any) says where it was trained, recorded as `trained_by`.
Training depends on the thread count: say it (OMP_NUM_THREADS).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batching_check import greedy_accuracy  # noqa: E402
from provenance import git_commit, teacher_of  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.stages import sft  # noqa: E402
from rewdistill.stages.common import Ctx  # noqa: E402
from rewdistill.tasks import get_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("variants", type=Path)
    args = ap.parse_args()
    for name, over in json.loads(args.variants.read_text()).items():
        cfg = load_config(str(args.base / "config.yaml"), over)
        d = args.out / name
        trained(d, args.base, train, cfg, d)
        record(args.out / "sweep.jsonl", scored(name, over, cfg, d, args.base))


def train(cfg, d: Path) -> None:
    sft.run(Ctx(cfg, d, stage_hash="sft-sweep"))


def trained(d: Path, base: Path, train, *args) -> None:
    """Run `train(*args)` (the sft stage in d) on a fresh copy of base's SFT inputs and write its seconds, unless
    d already holds a student and its seconds (then it is only scored)."""
    if (d / "student_sft").exists() and (d / "seconds.txt").exists():
        return
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for f in ["questions.jsonl", "teacher_labelled.jsonl"]:
        shutil.copy2(base / f, d / f)
    t0 = time.time()
    train(*args)
    (d / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")


def scored(name: str, over: dict, cfg, d: Path, base: Path) -> dict:
    """The sweep's JSON line for the student in d: its greedy validation accuracy, SFT seconds and provenance."""
    task = get_task(cfg.task.name)
    line = {"variant": name, "overrides": over, "task": cfg.task.name, "seed": cfg.seed, "split": "validation",
            "sft": greedy_accuracy(d / "student_sft", task, task.load("validation")),
            "sft_seconds": float((d / "seconds.txt").read_text()), "base": str(base),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "teacher": teacher_of(base),
            "commit": git_commit(), "date": time.strftime("%Y-%m-%d")}
    if (d / "source.txt").exists():  # a student trained elsewhere (e.g. by an ablation), only scored here
        line["trained_by"] = (d / "source.txt").read_text().strip()
    return line


def record(path: Path, line: dict) -> None:
    """Print a JSON line and append it to path."""
    print(json.dumps(line), flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
