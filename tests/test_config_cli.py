"""Config loading, validation and the CLI's errors and help."""
from __future__ import annotations

import pytest
import yaml

from rewdistill.cli import main
from rewdistill.config import Config, ConfigError
from rewdistill.config_files import iter_fields, load_config
from rewdistill.stage_list import stage_hashes


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
     ("task:\n  name: gsm9k\n", "task.name: 'gsm9k' is not one of tiny-arith, tiny-choice, gsm8k, mmlu-pro, jsonl"),
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


@pytest.mark.parametrize("until", ["sfft", "sft@2", "rl@3", "rl@0", "rl@x", "rl@"])
def test_an_until_that_names_no_stage_of_the_run_is_one_line_exit_2(tmp_path, capsys, until):
    """`sfft`: no such stage; `sft@2`: sft has no rounds; `rl@3`, `rl@0`: no such round of a 2-round run."""
    assert main(["run", "--run-dir", str(tmp_path / "r"), "--rl.rounds", "2", "--until", until]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"rewdistill: error: until {until!r} is not a stage"), err
    assert "rl@R for round R of 1..2" in err, err
    assert not (tmp_path / "r").exists()


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
    from rewdistill.config_files import shipped_configs

    path = shipped_configs()["tiny-arith"]
    assert load_config(str(path), {}) == Config() == load_config("tiny-arith", {})


def _literal_fields(model=Config, prefix=""):
    """(dotted key, allowed values) of every Literal field of the config, found by walking the pydantic models."""
    import typing

    from pydantic import BaseModel

    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _literal_fields(ann, f"{prefix}{name}.")
            continue
        for t in (ann, *typing.get_args(ann)):  # Literal[...] itself, or inside Optional / a union
            if typing.get_origin(t) is typing.Literal:
                yield f"{prefix}{name}", typing.get_args(t)


LITERALS = list(_literal_fields())


def test_every_literal_field_is_found():
    keys = [k for k, _ in LITERALS]
    assert {"sft.mixed_precision", "task.chat_template", "task.name", "rl.algo"} <= set(keys)
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("key,value", [(k, v) for k, values in LITERALS for v in values])
def test_every_literal_value_passes_as_a_cli_override_string(key, value):
    """`--sft.mixed_precision no`, `--task.chat_template off` / `on`: YAML would read these as booleans."""
    extra = {"rl.group_size": "4"}  # grpo / rloo need groups; harmless for the others
    cfg = load_config(None, {**extra, key: str(value)})
    section, field = key.split(".")
    got = getattr(getattr(cfg, section), field)
    assert got == ([value] if isinstance(got, list) else value)  # a list of literals (log.trackers) takes one too


@pytest.mark.parametrize("key,raw,expected", [
    ("rl.kl_coef", "0.05", 0.05), ("rl.steps", "3", 3), ("teacher_sample.temperatures", "[0.5, 1.0]", [0.5, 1.0]),
    ("lora.student", "true", True), ("lora.reward_model", "off", False), ("rl.kl_target", "null", None),
    ("task.path", "null", None), ("task.path", "no", "no"), ("task.path", "data/1.0", "data/1.0"),
    ("models.teacher", "on", "on"), ("openai.model", "1.5", "1.5"), ("lora.target_modules", "[q_proj, v_proj]",
                                                                    ["q_proj", "v_proj"]),
    ("lora.target_modules", "all-linear", "all-linear"), ("lora.target_modules", "yes", "yes"),
])
def test_overrides_parse_numbers_lists_bools_but_keep_strings(key, raw, expected):
    cfg = load_config(None, {key: raw})
    section, field = key.split(".")
    assert getattr(getattr(cfg, section), field) == expected


def test_unknown_task_name_is_echoed_one_line_exit_2(tmp_path, capsys):
    assert main(["run", "--task", "no-such-task", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("rewdistill: error: ")
    assert "task.name: 'no-such-task' is not one of tiny-arith, tiny-choice, gsm8k, mmlu-pro, jsonl" in err, err
    assert not (tmp_path / "r").exists()


def test_yaml_boolean_in_a_file_is_named_with_a_hint(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sft:\n  mixed_precision: no\n")
    with pytest.raises(ConfigError, match=r"sft.mixed_precision: False is not one of auto, no, bf16, fp16 .*quote"):
        load_config(str(f), {})


SHIPPED = "gsm8k-qwen2.5-7b-to-0.5b"


@pytest.mark.parametrize("name", [SHIPPED, SHIPPED + ".yaml"])
def test_shipped_config_found_by_bare_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(name, {})
    assert cfg.task.name == "gsm8k" and "Qwen2.5-7B" in cfg.models.teacher


def test_a_file_in_the_working_directory_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{SHIPPED}.yaml").write_text("task:\n  name: tiny-choice\n")
    assert load_config(f"{SHIPPED}.yaml", {}).task.name == "tiny-choice"


def test_unknown_config_name_lists_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", "no-such-config", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-config" in err and "Traceback" not in err, err
    for name in [SHIPPED, "mmlu-pro-llama3.1-8b-to-3.2-1b", "tiny-arith"]:
        assert name in err, err


def test_ablate_takes_run_dir_like_run_and_out_as_an_alias():
    from rewdistill.cli import build_parser

    ap = build_parser()
    assert ap.parse_args(["run", "--run-dir", "a"]).run_dir == "a"
    assert ap.parse_args(["ablate", "--run-dir", "b"]).run_dir == "b"
    assert ap.parse_args(["ablate", "--out", "c"]).run_dir == "c"
    assert ap.parse_args(["ablate"]).run_dir is None


def test_a_missing_path_to_a_shipped_name_points_at_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"configs/{SHIPPED}.yaml does not exist; .* write --config {SHIPPED}$"):
        load_config(f"configs/{SHIPPED}.yaml", {})


@pytest.mark.parametrize("task", ["tiny-arith", "tiny-choice"])
def test_a_runs_config_yaml_read_back_keeps_every_stage_hash(task):
    """The config.yaml a run writes, read back (`--config RUN/config.yaml`, seeding another run from it), must give
    the same stage hashes, or the stages it holds would be refused or rerun. A float field with an int default
    (lora.alpha 32) came back as 32.0 and changed the hash of sft and every stage after it."""
    cfg = load_config(None, {"task.name": task})
    back = Config.model_validate(yaml.safe_load(yaml.safe_dump(cfg.model_dump(), sort_keys=False)))
    assert stage_hashes(back) == stage_hashes(cfg)


def test_sft_epochs_default_is_the_tasks_and_an_explicit_value_wins():
    """sft.epochs null resolves per task (tiny-choice 10, chosen on validation; else 12) before any stage hash is
    taken, so that tiny-arith runs made when the default was a plain 12 keep their hashes."""
    from rewdistill.config import SFTCfg, TaskCfg

    mine = SFTCfg()
    assert Config(task=TaskCfg(name="tiny-choice"), sft=mine).sft.epochs == 10 and mine.epochs is None  # not changed
    assert load_config(None, {}).sft.epochs == 12
    assert load_config(None, {"task.name": "tiny-choice"}).sft.epochs == 10
    assert load_config(None, {"task.name": "gsm8k"}).sft.epochs == 12
    assert load_config(None, {"task.name": "tiny-choice", "sft.epochs": "12"}).sft.epochs == 12
    assert load_config("tiny-arith", {"task.name": "tiny-choice"}).sft.epochs == 10  # the shipped YAML says null
    assert stage_hashes(load_config(None, {})) == stage_hashes(load_config(None, {"sft.epochs": "12"}))
    choice = stage_hashes(load_config(None, {"task.name": "tiny-choice"}))
    assert choice == stage_hashes(load_config(None, {"task.name": "tiny-choice", "sft.epochs": "10"}))
    assert choice != stage_hashes(load_config(None, {"task.name": "tiny-choice", "sft.epochs": "12"}))
