"""Scaling out: sharded sampling, multi-process training (2 CPU processes, gloo), LoRA."""
from __future__ import annotations

import json

from rewdistill.cli import main
from tests.conftest import MICRO

SHARDED = [*MICRO, "--teacher_sample.batch_size", "4"]  # 12 questions, 2 per chunk: 6 chunks


def test_three_shards_merged_equal_one_unsharded_run(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(["run", "--run-dir", str(whole), *SHARDED, "--until", "teacher-sample"]) == 0
    run_dir = tmp_path / "sharded"
    for i in range(3):
        assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", f"{i}/3"]) == 0
        assert (run_dir / f"teacher_samples.shard-{i}-of-3.jsonl").exists()
    assert not (run_dir / "teacher_samples.jsonl").exists()  # nothing merged yet
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards", "--until", "teacher-sample"]) == 0
    assert (run_dir / "teacher_samples.jsonl").read_text() == (whole / "teacher_samples.jsonl").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert manifest["teacher-sample"]["done"]


def test_merge_refuses_missing_or_doubled_chunks(tmp_path, capsys):
    run_dir = tmp_path / "r"
    for i in (0, 2):
        assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", f"{i}/3"]) == 0
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards"]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 question chunks missing, from shards 1/3" in err
    shard0 = (run_dir / "teacher_samples.shard-0-of-3.jsonl").read_text()
    (run_dir / "teacher_samples.shard-1-of-3.jsonl").write_text(shard0)  # a wrong copy: chunks 0 and 3 twice
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards"]) == 1
    assert "question chunk 0 is in both" in capsys.readouterr().err
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", "3/3"]) == 2
