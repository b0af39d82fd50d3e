"""The default `rewdistill run` of this checkout and of an older commit, one after the other on the same machine.

    python benchmarks/side_by_side.py --task tiny-arith --base 594f4a2 \
        [--out benchmarks/results/side_by_side_tiny-arith.json]

Absolute times on shared machines drift by 1.5x from day to day, so a speed-up is only read from two runs
made back to back. The base commit is checked out into a temporary `git worktree` and imported through
PYTHONPATH (its own shipped models included); so is the newer commit (default HEAD), so that editing the
checkout while the runs go on changes nothing. Each run gets a fresh run directory; the JSON holds both runs'
seconds per stage, their wall times, test accuracies and the ratio base / new per stage and in all.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_time import timed_run  # benchmarks/pipeline_time.py

REPO = Path(__file__).resolve().parent.parent


def run_commit(task: str, src: Path, run_dir: Path) -> dict:
    """The default run with the package imported from `src` (a worktree's src/)."""
    env = {**os.environ, "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "rewdistill.cli", "run", "--task", task, "--run-dir", str(run_dir)]
    return timed_run(cmd, run_dir, env, cwd=run_dir.parent)  # not the checkout: `-m` puts the cwd on sys.path


def ratios(base: dict, new: dict) -> dict:
    """base seconds / new seconds per stage and for the wall time (> 1: the newer commit is faster)."""
    out = {k: round(base["stage_seconds"][k] / new["stage_seconds"][k], 2)
           for k in new["stage_seconds"] if k in base["stage_seconds"] and new["stage_seconds"][k] > 0.5}
    out["wall"] = round(base["wall_seconds"] / new["wall_seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="tiny-arith", help="task to run")
    ap.add_argument("--base", default="594f4a2", help="the older commit to time beside this checkout")
    ap.add_argument("--new", default="HEAD", help="the newer commit (default: this checkout's HEAD)")
    ap.add_argument("--keep", type=Path, default=None, help="move the newer commit's finished run directory here "
                    "(for benchmarks/train_speed.py and benchmarks/profile_stages.py)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default results/side_by_side_TASK.json)")
    args = ap.parse_args()
    out_path = args.out or REPO / "benchmarks" / "results" / f"side_by_side_{args.task}.json"
    tmp = Path(tempfile.mkdtemp(prefix="rewdistill-sbs-"))
    trees = {}
    try:
        runs = {}
        for role in ("base", "new"):
            rev = getattr(args, role)
            sha = subprocess.run(["git", "rev-parse", "--short", rev], check=True, cwd=REPO,
                                 capture_output=True, text=True).stdout.strip()
            trees[role] = tmp / role
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[role]), sha], check=True, cwd=REPO,
                           capture_output=True)
            print(f"[side-by-side] {args.task}: {role} {sha}", flush=True)
            runs[role] = run_commit(args.task, trees[role] / "src", tmp / f"run-{role}")
            runs[role]["commit"] = sha
            runs[role]["teacher"] = f"zoo:teacher (as shipped at {sha})"
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    base, new = runs["base"], runs["new"]
    out = {
        "task": args.task, "date": time.strftime("%Y-%m-%d"), "commit": new["commit"], "teacher": new["teacher"],
        "command": f"rewdistill run --task {args.task} (default options), base first, then this checkout",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "base": base, "new": new, "speedup": ratios(base, new),
    }
    print("\n| stage | base s | new s | base / new |\n|---|---:|---:|---:|")
    for k, v in new["stage_seconds"].items():
        print(f"| {k} | {base['stage_seconds'].get(k, float('nan')):.0f} | {v:.0f} | {out['speedup'].get(k, '')} |")
    print(f"| wall | {base['wall_seconds']:.0f} | {new['wall_seconds']:.0f} | {out['speedup']['wall']} |")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    if args.keep:
        shutil.move(str(tmp / "run-new"), str(args.keep))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
