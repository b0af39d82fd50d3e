"""Where each stage of a run spends its time: the stage rerun alone under cProfile, top functions into JSON.

    python benchmarks/profile_stages.py RUN_DIR [--stages sft reward-model rl] [--top 15] \
        [--set sft.epochs=1 ...] [--out benchmarks/results/profile_stages_<task>.json]

RUN_DIR is a finished run. For each stage, the stages before it are copied from RUN_DIR into a scratch
directory (`pipeline.seed_from`), and the stage runs there with RUN_DIR's config (plus `--set` overrides, e.g.
one SFT epoch instead of twelve to keep the profile short: the per-step work is the same) under cProfile. The
JSON lists, per stage, its seconds under the profiler (which adds its own overhead: read shares rather than
absolute times) and the functions with the most time spent in their own code (`tottime`): for torch these are
the operator calls (`linear`, `scaled_dot_product_attention`, `run_backward`, ...), so the table reads as "time
in matrix products / attention / the backward pass / the optimiser / Python".
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import torch
from provenance import git_commit, teacher_of  # benchmarks/provenance.py

from rewdistill.config import Config
from rewdistill.config_files import load_config
from rewdistill.pipeline import remove_outputs, run_pipeline, seed_from
from rewdistill.stage_list import stages_for


def where(func: tuple) -> str:
    """cProfile's (file, line, name) as `name (module.py:line)`, or the builtin's name."""
    path, line, name = func
    if path == "~":
        return name
    return f"{name} ({Path(path).name}:{line})"


def top_functions(prof: cProfile.Profile, total: float, n: int) -> list[dict]:
    """The n functions with the most own time (tottime), each with its share of the stage's wall time."""
    stats = pstats.Stats(prof).stats  # {func: (primitive calls, calls, tottime, cumtime, callers)}
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:n]
    return [{"function": where(f), "calls": s[1], "tottime_s": round(s[2], 2), "share": round(s[2] / total, 3),
             "cumtime_s": round(s[3], 2)} for f, s in rows]


def profile_stage(run: Path, cfg: Config, name: str, top: int) -> dict:
    """Rerun stage `name` (round 1) of `run` in a scratch copy under cProfile."""
    scratch = Path(tempfile.mkdtemp(prefix="rewdistill-prof-"))
    try:
        seed_from(run, scratch, cfg)
        manifest = json.loads((scratch / "manifest.json").read_text())
        stages = stages_for(cfg)
        first = next(i for i, s in enumerate(stages) if s.name == name)
        for stage in stages[first:]:  # this stage and every later one run afresh
            manifest["stages"].pop(stage.key, None)
            remove_outputs(scratch, stage)
        (scratch / "manifest.json").write_text(json.dumps(manifest))
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        run_pipeline(cfg, scratch, until=name)
        prof.disable()
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"stage": name, "seconds_profiled": round(seconds, 1), "top": top_functions(prof, seconds, top)}


def config_for(run: Path, stage: str, overrides: list[str]) -> Config:
    """The run's config, with the overrides of this stage's own section only (so the stages before it keep
    their hashes and are copied, not rerun)."""
    mine = dict(kv.split("=", 1) for kv in overrides if kv.split(".", 1)[0] == stage.replace("-", "_"))
    return load_config(str(run / "config.yaml"), mine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run directory")
    ap.add_argument("--stages", nargs="+", default=["teacher-sample", "sft", "reward-model", "rl", "evaluate"])
    ap.add_argument("--set", nargs="*", default=["sft.epochs=1"], metavar="KEY=V",
                    help="config overrides, each applied when its section's stage is profiled (default: one SFT epoch)")
    ap.add_argument("--top", type=int, default=15, help="functions listed per stage")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for name in args.stages:
        cfg = config_for(args.run, name, args.set)
        print(f"[profile] {name}", flush=True)
        rows.append(profile_stage(args.run, cfg, name, args.top))
        for r in rows[-1]["top"][:8]:
            print(f"  {r['share']:6.1%}  {r['tottime_s']:7.2f} s  {r['function']}")
    out = {"task": cfg.task.name, "run": str(args.run), "overrides": args.set, "date": time.strftime("%Y-%m-%d"),
           "commit": git_commit(), "teacher": teacher_of(args.run), "torch_threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "stages": rows}
    path = args.out or Path(__file__).parent / "results" / f"profile_stages_{cfg.task.name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
