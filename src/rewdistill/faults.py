"""Fault injection for the crash-resume tests: `REWDISTILL_KILL_AT=<point>#<k>` makes the process SIGKILL itself
the k-th time it reaches `<point>` (e.g. `sft-step#3`, `sample-chunk#2`, `sample-torn#1`). Unset: a no-op."""
from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter = Counter()


def kill_point(name: str, before=None) -> None:
    """SIGKILL this process here if REWDISTILL_KILL_AT asks for it (after calling `before`, e.g. a torn write)."""
    spec = os.environ.get("REWDISTILL_KILL_AT")
    if not spec:
        return
    _seen[name] += 1
    if spec == f"{name}#{_seen[name]}":
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)
