"""Crash resume: a real `rewdistill run` (subprocess) SIGKILLed at points across stages, rerun each time, ends
with the same results.json as an uninterrupted run (all but the wall-clock `seconds`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import MICRO

RESUME = [*MICRO, "--teacher_sample.batch_size", "8", "--student_sample.batch_size", "4",
          "--reliability.checkpoint_every", "2", "--sft.epochs", "2", "--reward_model.epochs", "2",
          "--rl.rounds", "2", "--rl.steps", "2", "--rl.watch_every", "1", "--rl.watch_n", "4"]


def run(run_dir, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("REWDISTILL_KILL_AT", None)
    if kill_at:
        env["REWDISTILL_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "rewdistill.cli", "run", "--run-dir", str(run_dir), *RESUME],
                          env=env, capture_output=True, text=True, timeout=600)


def results(run_dir) -> dict:
    res = json.loads((run_dir / "results.json").read_text())
    res.pop("seconds")
    return res


@pytest.mark.slow  # minutes on 2 cores: .ci/run runs it after the main suite
def test_sigkill_anywhere_then_rerun_gives_the_uninterrupted_results(tmp_path):
    clean = tmp_path / "clean"
    assert run(clean).returncode == 0
    crashed = tmp_path / "crashed"
    kills = [
        "sample-chunk#2",  # teacher-sample: two of three chunks written
        "sample-torn#1",  # teacher-sample: dies half-way through writing the third chunk (a torn line)
        "sft-step#3",  # sft: checkpoint at step 2, step 3 lost
        "sample-chunk#2",  # sft resumes and finishes; student-sample dies after two chunks
        "rm-step#1",  # reward-model: before its first checkpoint
        "rm-step#3",  # reward-model: after the checkpoint of step 2
        "rl-step#3",  # rl@2: round 1 done, round 2's student-sample and reward-model done, its rl dies after step 3
    ]
    seen = []
    for point in kills:
        p = run(crashed, point)
        assert p.returncode == -signal.SIGKILL, (point, p.stderr[-2000:])
        seen.append(json.loads((crashed / "manifest.json").read_text())["stages"])
    final = run(crashed)
    assert final.returncode == 0, final.stderr[-2000:]
    assert results(crashed) == results(clean)
    for name in ["teacher_samples.jsonl", "student_samples.jsonl", "sft_metrics.jsonl", "reward_model_metrics.jsonl",
                 "rl_metrics.jsonl", "round2/student_samples.jsonl", "round2/rl_metrics.jsonl"]:
        assert (crashed / name).read_text() == (clean / name).read_text(), name
    assert not (crashed / "checkpoints").exists() and not list(crashed.glob("*.progress.jsonl"))
    # the crashes really happened where intended: the stage running at each kill is recorded as not done
    running = [next(k for k, v in m.items() if not v["done"]) for m in seen]
    assert running == ["teacher-sample", "teacher-sample", "sft", "student-sample", "reward-model", "reward-model",
                       "rl@2"]
