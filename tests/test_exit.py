"""How a run's process leaves: after a process group it skips the interpreter's finalization (where gloo's worker
threads can abort a finished run) without losing its output or its exit code; otherwise it exits as usual."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import atexit, logging, sys
import rewdistill.launch as launch
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
atexit.register(lambda: print("finalized", flush=True))
launch._closed = {closed}
print("printed", end="")  # no newline: left in stdout's buffer
logging.getLogger("rewdistill").info("logged")
launch.exit_process(3)
"""


def leave(closed: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout a buffered pipe, as in a launch
    return subprocess.run([sys.executable, "-c", SCRIPT.format(closed=closed)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)


def test_after_a_process_group_the_process_skips_finalization_and_keeps_output_and_code():
    p = leave(closed=True)
    assert p.returncode == 3
    assert p.stdout == "printed"  # flushed, and no atexit handler ran
    assert "logged" in p.stderr


def test_without_a_process_group_the_process_exits_as_usual():
    p = leave(closed=False)
    assert p.returncode == 3
    assert p.stdout == "printed" + "finalized\n"
    assert "logged" in p.stderr


def test_the_command_and_python_m_leave_through_exit_process():
    assert 'rewdistill = "rewdistill.cli:entry"' in (ROOT / "pyproject.toml").read_text()
    p = subprocess.run([sys.executable, "-m", "rewdistill.cli", "run", "--until", "nonsense"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.startswith("rewdistill: error:"), p.stderr
