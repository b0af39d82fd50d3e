"""Wall time of the default `rewdistill run`, per stage.

    python benchmarks/pipeline_time.py [--task tiny-arith] [--out benchmarks/results/pipeline_time.json] \
[-- extra run options]

Runs the pipeline in a fresh run directory, prints a table of seconds per stage (from the run's
manifest) and the total wall time, and writes them as JSON with the machine's facts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import git_commit, teacher_of  # benchmarks/provenance.py


def timed_run(cmd: list[str], run_dir: Path, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run a `rewdistill run` command that writes `run_dir`; its wall time, seconds per stage (the manifest) and
    accuracies (results.json)."""
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=cwd)
    wall = time.time() - t0
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    results = json.loads((run_dir / "results.json").read_text())
    return {"wall_seconds": round(wall, 1), "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
            "accuracy": results["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="tiny-arith", help="task to run")
    ap.add_argument("--out", default="benchmarks/results/pipeline_time.json", help="JSON output path")
    ap.add_argument("extra", nargs="*", help="more `rewdistill run` options (after --)")
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="rewdistill-bench-"))
    cmd = [sys.executable, "-m", "rewdistill.cli", "run", "--task", args.task, "--run-dir", str(run_dir), *args.extra]
    run = timed_run(cmd, run_dir)
    out = {
        "command": " ".join(["rewdistill", *cmd[3:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "teacher": teacher_of(run_dir),
        **run,
    }
    print("\n| stage | seconds |\n|---|---:|")
    for k, v in out["stage_seconds"].items():
        print(f"| {k} | {v:.0f} |")
    print(f"| **total (wall, incl. start-up)** | **{run['wall_seconds']:.0f}** |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
