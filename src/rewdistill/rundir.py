"""A run directory's safety: one process at a time (an OS lock), one decision for every process (broadcast),
and a check of every finished stage's files against the manifest (`rewdistill verify`)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accelerate import PartialState

from rewdistill.artifacts import problems
from rewdistill.io import read_json


class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` (fcntl on `run_dir/.lock`) while a run works in it; the OS releases it
    when the process ends, however it ends, so a killed run never leaves a stale lock. A second process is
    refused with the holder's pid."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunDirBusy(f"run directory {run_dir} is in use by another rewdistill process (pid {holder}); wait "
                         "for it to finish, or use another --run-dir") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


def broadcast(value):
    """The main process's value on every process (a no-op on one process)."""
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    if state.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def verify_run(run_dir: Path) -> list[tuple[str, int, list[str]]]:
    """Per finished stage in the manifest: (stage key, files recorded, what differs from the record)."""
    manifest = read_json(run_dir / "manifest.json")
    out = []
    for key, rec in manifest["stages"].items():
        if rec.get("done"):
            recorded = rec.get("files") or {}
            out.append((key, len(recorded), problems(run_dir, recorded)))
    return out
