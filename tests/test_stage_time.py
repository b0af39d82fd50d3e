"""benchmarks/stage_time.py reruns exactly the named stage on the base run's inputs: earlier stages are copied, not
rerun; the stage itself is trained again; nothing after it runs."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from rewdistill.cli import main
from rewdistill.io import read_json
from tests.conftest import MICRO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from stage_time import time_stage  # noqa: E402


def test_time_stage_reruns_only_the_stage(tmp_path, tiny_qwen_student):
    base = tmp_path / "base"
    assert main(["run", "--run-dir", str(base), "--models.student", tiny_qwen_student, *MICRO,
                 "--until", "sft"]) == 0
    t0 = time.time()
    seconds = time_stage(base, tmp_path / "side", "sft", {"sft.lr": "1e-3"})
    side = tmp_path / "side"
    manifest = read_json(side / "manifest.json")["stages"]
    assert list(manifest) == ["teacher-sample", "pseudo-label", "sft"]  # nothing after the stage
    assert manifest["teacher-sample"] == read_json(base / "manifest.json")["stages"]["teacher-sample"]  # copied
    assert (side / "teacher_samples.jsonl").stat().st_mtime < t0  # copied with its time, not sampled again
    assert (side / "student_sft" / "model.safetensors").stat().st_mtime >= t0  # trained again
    assert seconds == manifest["sft"]["seconds"]
    # the same config as the base: the stage still runs again (a timing must not read the base's cached stage)
    t1 = time.time()
    time_stage(base, tmp_path / "same", "sft", {})
    assert (tmp_path / "same" / "student_sft" / "model.safetensors").stat().st_mtime >= t1


def test_time_stage_refuses_a_directory_that_is_no_run(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match="not a run directory"):
        time_stage(tmp_path / "run", tmp_path / "d", "sft", {})
