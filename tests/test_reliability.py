"""One run per directory (an OS lock) and artifacts verified before reuse (sha256 in the manifest, `verify`)."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rewdistill.cli import main
from rewdistill.io import read_json, read_jsonl
from tests.conftest import MICRO

ROOT = Path(__file__).resolve().parents[1]


def start_run(run_dir: Path) -> subprocess.Popen:
    """`rewdistill run` in another process, with this process's thread count (so the numbers match)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "rewdistill.cli", "run", "--run-dir", str(run_dir), *MICRO],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_lock(run_dir: Path, pid: int, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        lock = run_dir / ".lock"
        if lock.exists() and lock.read_text().strip() == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


def outcome(run_dir: Path) -> tuple:
    """What a run produced that must not depend on being disturbed: accuracies and every greedy answer."""
    res = read_json(run_dir / "results.json")
    return res["accuracy"], [(r["model"], r["qid"], r["temperature"], r["text"])
                             for r in read_jsonl(run_dir / "eval_samples.jsonl")]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    d = tmp_path_factory.mktemp("undisturbed") / "run"
    assert main(["run", "--run-dir", str(d), *MICRO]) == 0
    return d


def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path, undisturbed, capsys):
    d = tmp_path / "run"
    first = start_run(d)
    wait_for_lock(d, first.pid)
    assert main(["run", "--run-dir", str(d), *MICRO]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(d) in err[0] and f"pid {first.pid}" in err[0] and "in use" in err[0]
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert outcome(d) == outcome(undisturbed)


def test_a_killed_run_leaves_no_stale_lock(tmp_path, undisturbed):
    d = tmp_path / "run"
    first = start_run(d)
    wait_for_lock(d, first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (d / ".lock").read_text().strip() == str(first.pid)  # the file stays; the lock went with the process
    assert main(["run", "--run-dir", str(d), *MICRO]) == 0
    assert outcome(d) == outcome(undisturbed)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel,damage,stage", [("teacher_samples.jsonl", truncate, "teacher-sample"),
                                              ("student_sft/model.safetensors", flip_byte, "sft"),
                                              ("labels.jsonl", Path.unlink, "pseudo-label")])
def test_damaged_artifacts_are_detected_and_only_their_stage_rebuilt(tmp_path, undisturbed, capsys, caplog, rel,
                                                                     damage, stage):
    d = tmp_path / "run"
    shutil.copytree(undisturbed, d)
    assert main(["verify", str(d)]) == 0
    assert f"{d}: intact" in capsys.readouterr().out
    damage(d / rel)
    assert main(["verify", str(d)]) == 1
    out = capsys.readouterr().out
    assert f"{stage}: DAMAGED: {rel}" in out and "1 stage(s) damaged" in out
    with caplog.at_level(logging.INFO, logger="rewdistill"):
        assert main(["run", "--run-dir", str(d), *MICRO]) == 0
    log = caplog.text
    assert f"{stage}: {rel}" in log and f"rerunning {stage}" in log  # the warning names the file
    assert f"{stage}: rebuilt identical to what was recorded; later stages kept" in log
    n_done = sum(": done already (" in line for line in log.splitlines())
    assert n_done == 6  # every other stage of the seven was kept
    assert outcome(d) == outcome(undisturbed)
    assert main(["verify", str(d)]) == 0


def test_verify_refuses_a_directory_without_a_manifest(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no manifest.json" in err[0]
