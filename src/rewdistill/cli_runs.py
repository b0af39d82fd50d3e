"""CLI commands that read finished run directories: `rewdistill verify` and `rewdistill report`."""
from __future__ import annotations

import argparse
from pathlib import Path

from rewdistill.config import ConfigError


def _report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="compare finished runs side by side: results, diagnostics, differing config keys, one plot",
        description="Read each RUN_DIR's results.json and config.yaml; print a side-by-side table of results and "
        "diagnostics and the config keys whose values differ; with --out write compare.md and compare.png there.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories (hold results.json)")
    p.add_argument("--out", help="folder for compare.md and compare.png")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def cmd_report(args) -> int:
    from rewdistill.compare import format_compare, load_runs, write_compare

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        for name in ("results.json", "config.yaml"):
            if not (d / name).is_file():
                raise ConfigError(f"{d}: no {name}; give directories of finished runs (rewdistill run ... to the end)")
    if args.out:
        print(write_compare(dirs, Path(args.out)))
        print(f"\nwritten: {Path(args.out) / 'compare.md'}, {Path(args.out) / 'compare.png'}")
    else:
        print(format_compare(load_runs(dirs)))
    return 0


def _verify_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "verify",
        help="check that a run directory's files are the ones its stages wrote",
        description="Compare every file a finished stage wrote (size and sha256, recorded in manifest.json) with "
        "what is on disk; print one line per stage. Exit 0 when everything is intact, 1 otherwise; rerun the "
        "same `rewdistill run` to rebuild only the damaged stages.",
    )
    p.add_argument("run_dir", help="a run directory (holds manifest.json)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def cmd_verify(args) -> int:
    from rewdistill.rundir import verify_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(f"{run_dir}: no manifest.json here; give the directory a `rewdistill run` wrote")
    lock = run_dir / ".lock"
    if lock.exists():
        import fcntl

        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"note: a run holds {run_dir} (pid {f.read().strip() or '?'}): its files may be changing now")
    bad = 0
    for key, n_files, found in verify_run(run_dir):
        if not n_files:
            print(f"{key}: no fingerprints recorded (written by an older rewdistill); not checked")
        elif found:
            bad += 1
            print(f"{key}: DAMAGED: {'; '.join(found)}")
        else:
            print(f"{key}: intact ({n_files} files)")
    print(f"{run_dir}: " + (f"{bad} stage(s) damaged; rerun the same `rewdistill run` to rebuild them" if bad else
                            "intact"))
    return 1 if bad else 0


def add_run_tools(sub) -> None:
    _verify_parser(sub)
    _report_parser(sub)


RUN_TOOLS = {"verify": cmd_verify, "report": cmd_report}
