"""Config loading, validation and the CLI's errors and help."""
from __future__ import annotations

import pytest

from rewdistill.cli import main
from rewdistill.config import Config, ConfigError, iter_fields, load_config
from rewdistill.pipeline import stage_hashes


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("rl:\n  kl_coef: 0.1\n  steps: 3\ntask:\n  name: tiny-choice\n")
    cfg = load_config(str(f), {"rl.kl_coef": "0.05", "teacher_sample.temperatures": "[0.5, 1.0]"})
    assert cfg.rl.kl_coef == 0.05 and cfg.rl.steps == 3 and cfg.task.name == "tiny-choice"
    assert cfg.teacher_sample.temperatures == [0.5, 1.0]


@pytest.mark.parametrize(
    "yaml_text, where",
    [("rl:\n  kl_coeff: 0.1\n", "rl.kl_coeff: unknown key"),
     ("rl:\n  steps: many\n", "rl.steps: Input should be a valid integer"),
     ("task:\n  name: gsm9k\n", "task.name: Input should be"),
     ("- 1\n- 2\n", "top level must be a mapping")],
)
def test_bad_config_names_the_key(tmp_path, yaml_text, where):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=where.replace("(", r"\(")):
        load_config(str(f), {})


def test_cli_config_error_is_one_line_exit_2_and_file_untouched(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("sft:\n  epoch: 3\n")
    before = f.read_bytes()
    assert main(["run", "--config", str(f), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sft.epoch: unknown key" in err and str(f) in err
    assert f.read_bytes() == before
    assert not (tmp_path / "r").exists()


def test_cli_missing_model_is_runtime_error_exit_1(tmp_path, capsys):
    code = main(["run", "--run-dir", str(tmp_path / "r"), "--models.teacher", str(tmp_path / "nope"),
                 "--task.n_train", "2"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot load" in err and "nope" in err and "Traceback" not in err


def test_help_lists_every_option_with_text(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for key, desc, _ in iter_fields():
        assert f"--{key}" in out, key
        assert desc, key


def test_stage_hash_changes_only_downstream():
    a = stage_hashes(Config())
    b = stage_hashes(Config.model_validate({"reward_model": {"loss": "bt"}}))
    same = ["teacher-sample", "pseudo-label", "sft", "student-sample"]
    assert all(a[s] == b[s] for s in same)
    assert all(a[s] != b[s] for s in ["reward-model", "rl", "evaluate"])


def test_stages_may_use_different_precision_and_accumulation(tmp_path):
    from rewdistill.stages.common import Ctx

    ctx = Ctx(Config(), tmp_path)
    a = ctx.accelerator("no", 2)
    assert a.gradient_accumulation_steps == 2
    b = ctx.accelerator("bf16", 1)
    assert b.gradient_accumulation_steps == 1 and b.mixed_precision == "bf16"
    c = ctx.accelerator("no", 1)
    assert c.mixed_precision == "no"


def test_shipped_example_config_equals_the_defaults():
    from pathlib import Path

    path = Path(__file__).parent.parent / "configs" / "tiny-arith.yaml"
    assert load_config(str(path), {}) == Config()
