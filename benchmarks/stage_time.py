"""How long does one stage take with and without a change? Side by side, on the same inputs, one after the other.

    python benchmarks/stage_time.py BASE_RUN --stage sft --work DIR --out OUT.json \
        --side eager --side compiled sft.compile=on [--repeats 1]

BASE_RUN is a finished run. For each side (a label, then dotted overrides), its stages before `--stage` are copied
from BASE_RUN into DIR/<label> (`pipeline.seed_from`: same inputs, nothing retrained), then the pipeline runs until
`--stage` and the stage's wall seconds (the manifest's) are recorded. Sides alternate when `--repeats` > 1, so that
drift of the machine falls on both. The JSON records each side's seconds, the median, the ratio to the first side,
the thread count, the commit and the teacher. Timing only: results of a change are checked elsewhere (e.g.
`benchmarks/batching_check.py` on validation). Run it on idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, teacher_of  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.io import read_json, write_json  # noqa: E402
from rewdistill.pipeline import run_pipeline, seed_from  # noqa: E402
from rewdistill.stage_list import stages_for  # noqa: E402


def overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--side: {item!r} is not KEY=VALUE (e.g. sft.compile=on)")
        out[key] = value
    return out


def time_stage(base: Path, d: Path, stage: str, over: dict[str, str]) -> float:
    """Copy BASE's stages before `stage` into `d`, run until `stage`, return the stage's manifest seconds."""
    if not (base / "manifest.json").exists():
        raise SystemExit(f"{base}: not a run directory (no manifest.json)")
    cfg = load_config(str(base / "config.yaml"), over)
    keys = [s.key for s in stages_for(cfg)]
    if stage not in keys:
        raise SystemExit(f"--stage {stage}: not a stage of this run ({', '.join(keys)})")
    shutil.rmtree(d, ignore_errors=True)
    seed_from(base, d, cfg)
    m = read_json(d / "manifest.json")
    m["stages"] = {k: v for k, v in m["stages"].items() if keys.index(k) < keys.index(stage)}
    write_json(d / "manifest.json", m)  # the stage and every later one run again
    run_pipeline(cfg, d, until=stage)
    return read_json(d / "manifest.json")["stages"][stage]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("--stage", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--side", nargs="+", action="append", required=True, metavar="LABEL [KEY=VALUE ...]")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if len(args.side) < 2:
        raise SystemExit("--side: give at least two sides (a label each, then its overrides)")
    sides = {s[0]: overrides(s[1:]) for s in args.side}
    seconds: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(args.repeats):
        for label, over in sides.items():
            seconds[label].append(time_stage(args.base, args.work / label, args.stage, over))
            print(f"{label}: {seconds[label][-1]:.1f} s", flush=True)
    first = statistics.median(seconds[next(iter(sides))])
    out = {"base": str(args.base), "stage": args.stage, "date": time.strftime("%Y-%m-%d"),
           "commit": git_commit(), "teacher": teacher_of(args.base),
           "threads": os.environ.get("OMP_NUM_THREADS") or f"unset ({os.cpu_count()} CPUs)",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "sides": {label: {"overrides": over, "seconds": seconds[label],
                             "median": statistics.median(seconds[label]),
                             "ratio_to_first": first / statistics.median(seconds[label])}
                     for label, over in sides.items()},
           "command": "python benchmarks/stage_time.py " + " ".join(sys.argv[1:])}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["sides"], indent=1))


if __name__ == "__main__":
    main()
