"""The paper's comparison as a benchmark: `rewdistill ablate` over 3 seeds, timed, saved as JSON.

    python benchmarks/ablation.py [--task tiny-arith] [--out-dir DIR] [--out JSON] [-- extra ablate options]

Prints the ablation table, and writes benchmarks/results/ablation-<task>.json (or --out): the ablation summary
(`ablation.json`), the wall time and the machine. Rerunning reuses finished stages of the same run
directory (delete it for a fresh timing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from provenance import git_commit, teacher_of  # benchmarks/provenance.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="tiny-arith", help="task")
    ap.add_argument("--out-dir", help="ablation directory (default runs/ablate-<task>)")
    ap.add_argument("--out", help="the JSON to write (default benchmarks/results/ablation-<task>.json)")
    ap.add_argument("extra", nargs="*", help="more `rewdistill ablate` options (after --)")
    args = ap.parse_args()
    out_dir = Path(args.out_dir or f"runs/ablate-{args.task}")
    cmd = [sys.executable, "-m", "rewdistill.cli", "ablate", "--task", args.task, "--run-dir", str(out_dir),
           *args.extra]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    summary = json.loads((out_dir / "ablation.json").read_text())
    out = {
        "command": " ".join(["rewdistill", *cmd[3:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "teacher": teacher_of(next(iter(sorted(out_dir.glob("seed*/rm"))), out_dir)),
        "wall_seconds": round(wall, 1),
        "ablation": summary,
    }
    path = Path(args.out or f"benchmarks/results/ablation-{args.task}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wall {wall / 60:.1f} min; written {path}")


if __name__ == "__main__":
    main()
