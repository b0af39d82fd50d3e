"""Does a change of the whole pipeline keep results? Validation only: the default run's SFT and RL students (and the
teacher), seed by seed, before and after (here: `auto` precision, bf16 on a CPU with AMX).

    python benchmarks/precision_check.py --side fp32 RUN [RUN ...] --side auto RUN [RUN ...] --out OUT.json
        [--reevaluate DIR] [--note TEXT]

Each side is a label and finished runs, one per seed (e.g. the `rm` variant of each seed of `rewdistill ablate`).
A run evaluated on the validation split (`--evaluate.split validation`) is read as it is. With `--reevaluate DIR`,
a run evaluated on the test split is evaluated again on validation: its stages before `evaluate` are copied into
DIR/<label>_<parent>_<run> (`pipeline.seed_from`, nothing retrained) and the evaluate stage runs there with the code on
PYTHONPATH (run it from a checkout of the commit that trained the runs, so that evaluation is that commit's too).
The test split is never read. The JSON holds every seed, each side's mean and std, and whether each later side's
mean moved by less than one seed-std of the first side (the acceptance of the speed issue; students only: the
teacher is one model, its greedy accuracy has no seed-std).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, teacher_of  # noqa: E402

from rewdistill.io import read_json  # noqa: E402

STUDENTS = ["student_sft", "student_rl"]
METRICS = [*STUDENTS, "teacher_greedy"]


def validation_results(run: Path, label: str, work: Path | None) -> dict:
    """results.json of `run` on the validation split (evaluated again under `work` when it was on test)."""
    res = read_json(run / "results.json")
    if res.get("split") == "validation":
        return res
    if work is None:
        raise SystemExit(f"{run}: evaluated on {res.get('split')!r}; pass --reevaluate DIR to evaluate it on "
                         "validation (the test split is not read here)")
    from stage_time import time_stage  # benchmarks/stage_time.py: seed_from + run until the stage

    d = work / f"{label}_{run.parent.name}_{run.name}"
    time_stage(run, d, "evaluate", {"evaluate.split": "validation"})
    return read_json(d / "results.json")


def summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", nargs="+", action="append", required=True, metavar="LABEL RUN")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reevaluate", type=Path, default=None, help="work directory for runs evaluated on test")
    ap.add_argument("--note", default="", help="how the runs were made (commits, commands, threads)")
    ap.add_argument("--commit", default=None, help="the commit the later sides' runs were made at (default: this "
                    "checkout's); the teacher is named as shipped there")
    args = ap.parse_args()
    if len(args.side) < 2 or any(len(s) < 2 for s in args.side):
        raise SystemExit("--side: give at least two sides, each a label then its runs")
    sides = {s[0]: [Path(r) for r in s[1:]] for s in args.side}
    rows, task = [], None
    for label, runs in sides.items():
        for run in runs:
            res = validation_results(run, label, args.reevaluate)
            task = task or res["task"]
            if res["task"] != task:
                raise SystemExit(f"{run}: task {res['task']}, not {task}")
            rows.append({"side": label, "seed": res["seed"], "run": str(run), "n": res["n_test"],
                         **{k: res["accuracy"][k] for k in METRICS}})
            print(json.dumps(rows[-1]), flush=True)
    stats = {label: {k: summary([r[k] for r in rows if r["side"] == label]) for k in METRICS} for label in sides}
    first = next(iter(sides))
    within = {label: {k: abs(stats[label][k]["mean"] - stats[first][k]["mean"]) <= stats[first][k]["std"]
                      for k in STUDENTS} for label in list(sides)[1:]}  # the teacher is one model: no seed-std
    measured = args.commit or git_commit()
    teacher = (teacher_of(sides[first][0]) or "").replace(f"as shipped at {git_commit()}", f"as shipped at {measured}")
    out = {"date": time.strftime("%Y-%m-%d"), "task": task, "split": "validation", "labels": list(sides),
           "commit": measured, "teacher": teacher, "note": args.note, "rows": rows,
           "summary": stats, "within_one_std_of_first": within,
           "command": "python benchmarks/precision_check.py " + " ".join(sys.argv[1:])}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for label in sides:
        print(label, {k: f"{v['mean']:.3f} +- {v['std']:.3f}" for k, v in stats[label].items()})
    print("within one std of", first, within)


if __name__ == "__main__":
    main()
