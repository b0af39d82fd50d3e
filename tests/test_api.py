"""The Python API: docs/python-api.md's example runs as written; config errors are one clear line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import rewdistill
from rewdistill.config import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_the_documented_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    res = rewdistill.results(tmp_path / "runs/api-example")
    assert set(res["accuracy"]) >= {"teacher_greedy", "student_sft", "student_rl"} and res["n_test"] == 12


def test_load_config_takes_python_values_and_names_a_bad_key():
    cfg = rewdistill.load_config(overrides={"rl.kl_coef": 0.05, "teacher_sample.temperatures": [0.7, 1.1],
                                            "evaluate.teacher": False, "task.name": "tiny-choice"})
    assert cfg.rl.kl_coef == 0.05 and cfg.teacher_sample.temperatures == [0.7, 1.1] and not cfg.evaluate.teacher
    with pytest.raises(ConfigError, match="rl.no_such_key"):
        rewdistill.load_config(overrides={"rl.no_such_key": 1})
    with pytest.raises(ConfigError, match="not a stage"):
        rewdistill.run(cfg, "unused", until="sfft")
    assert rewdistill.Config is type(cfg) and "run" in rewdistill.__all__
