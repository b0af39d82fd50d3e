"""How a run's process leaves: in a process group it skips the interpreter's finalization (where gloo's worker
threads can abort a finished run) without losing its printed or logged output or its exit code; otherwise it exits
as usual. Each case runs in its own Python process (a 1-process gloo group where one is needed)."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import atexit, logging, logging.handlers, sys
import torch.distributed as td
from rewdistill import cli, launch
handler = logging.handlers.MemoryHandler(100, target=logging.StreamHandler(sys.stderr))  # written at shutdown only
logging.getLogger("rewdistill").addHandler(handler)
logging.getLogger("rewdistill").setLevel(logging.INFO)
atexit.register(lambda: print("finalized", flush=True))
def group():
    td.init_process_group("gloo", rank=0, world_size=1, init_method="file://" + sys.argv[1])
print("printed", end="")  # no newline: left in stdout's buffer
logging.getLogger("rewdistill").info("logged")
"""


def run(body: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout a buffered pipe, as in a launch
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", PRELUDE + body, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)


def test_a_closed_process_group_leaves_without_finalizing_and_keeps_output_and_code(tmp_path):
    p = run("group()\nlaunch.close_processes()\nlaunch.exit_process(3)", tmp_path)
    assert (p.returncode, p.stdout) == (3, "printed"), p.stderr  # flushed, and no atexit handler ran
    assert "logged" in p.stderr


def test_a_group_left_open_by_an_error_also_leaves_without_finalizing(tmp_path):
    p = run("group()\nlaunch.exit_process(1)", tmp_path)
    assert (p.returncode, p.stdout) == (1, "printed"), p.stderr
    assert "logged" in p.stderr


def test_without_a_process_group_the_process_exits_as_usual(tmp_path):
    p = run("launch.exit_process(3)", tmp_path)
    assert (p.returncode, p.stdout) == (3, "printed" + "finalized\n"), p.stderr
    assert "logged" in p.stderr


def test_an_unexpected_error_in_a_process_group_prints_its_traceback_and_leaves_with_1(tmp_path):
    body = "group()\ndef boom(argv=None):\n    raise KeyError('boom')\ncli.main = boom\ncli.entry()"
    p = run(body, tmp_path)
    assert (p.returncode, p.stdout) == (1, "printed"), p.stderr
    assert "KeyError: 'boom'" in p.stderr and "logged" in p.stderr


def test_the_command_and_python_m_leave_through_exit_process(tmp_path):
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "rewdistill"]
    assert script.value == "rewdistill.cli:entry"  # the installed `rewdistill` command
    body = ("import runpy\ndef stub(code):\n    print(' exit_process', code)\n    sys.exit(code)\n"
            "launch.exit_process = stub\nsys.argv = ['rewdistill', 'run', '--until', 'nonsense']\n"
            "runpy.run_module('rewdistill.cli', run_name='__main__')")
    p = run(body, tmp_path)
    assert p.returncode == 2 and "exit_process 2" in p.stdout and "rewdistill: error:" in p.stderr, p.stderr
