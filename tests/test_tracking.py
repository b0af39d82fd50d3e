"""--log.with tensorboard: every metric row in the JSONL files reaches TensorBoard, with the config."""
from __future__ import annotations

import math

import pytest

from rewdistill.cli import main
from rewdistill.io import read_jsonl
from tests.conftest import MICRO


def test_tensorboard_events_equal_the_jsonl_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    assert main(["run", "--run-dir", str(run_dir), *MICRO, "--log.with", "tensorboard", "--rl.rounds", "2"]) == 0
    acc = EventAccumulator(str(run_dir / "logs" / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    checked = 0
    for stage, path in [("sft", "sft_metrics.jsonl"), ("reward_model", "reward_model_metrics.jsonl"),
                        ("rl", "rl_metrics.jsonl"), ("rl@2", "round2/rl_metrics.jsonl")]:
        rows = read_jsonl(run_dir / path)
        assert rows, path
        for key in {k for r in rows for k, v in r.items() if k != "step" and isinstance(v, float) and math.isfinite(v)}:
            want = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
            assert f"{stage}/{key}" in tags, (stage, key)
            got = [(e.step, e.value) for e in acc.Scalars(f"{stage}/{key}")]
            assert [s for s, _ in got] == [s for s, _ in want], (stage, key)
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), (stage, key)
            checked += 1
    assert checked > 20
    hparams = list((run_dir / "logs" / "tensorboard").rglob("hparams.yml"))
    assert hparams and "rl.kl_coef" in hparams[0].read_text()
