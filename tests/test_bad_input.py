"""Every bad input: a one-line error naming what and where, the right exit code, no traceback, and the user's
files untouched."""
from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest

from rewdistill.cli import main
from tests.conftest import MICRO


def digest(paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def fails(capsys, args, code: int, *needles: str) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == code, err
    line = err.rstrip("\n").split("\n")[-1].split("\r")[-1]  # progress bars may precede it on stderr
    assert line.startswith("rewdistill: error: ") and err.endswith(line + "\n") and "Traceback" not in err, err
    for n in needles:
        assert n in line, (n, line)
    return line


def own_task(tmp_path, lines: list[str] | bytes, **extra) -> list[str]:
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    f = d / "test.jsonl"
    f.write_bytes(lines if isinstance(lines, bytes) else "".join(line + "\n" for line in lines).encode())
    args = ["run", "--run-dir", str(tmp_path / "run"), *MICRO, "--task.name", "jsonl", "--task.path", str(f),
            "--task.n_heldout", "1", "--task.n_validation", "1"]
    for k, v in extra.items():
        args += [f"--task.{k}", v]
    return args


GOOD = [json.dumps({"question": f"{i} + 1?", "answer": i + 1}) for i in range(6)]


@pytest.mark.parametrize("bad,needle", [
    ("{not json", "test.jsonl:3: malformed JSON"),
    (json.dumps({"question": "x"}), "test.jsonl:3: missing field 'answer'"),
    (json.dumps({"question": ["x"], "answer": 1}), "test.jsonl:3: field 'question' should be str, got list"),
    (json.dumps({"question": "x", "answer": "many"}), "test.jsonl:3: field 'answer' is not a number"),
])
def test_bad_rows_name_file_and_line(tmp_path, capsys, bad, needle):
    args = own_task(tmp_path, GOOD[:2] + [bad] + GOOD[2:])
    f = tmp_path / "data" / "test.jsonl"
    before = digest([f])
    fails(capsys, args, 1, needle, "bad_rows: skip")
    assert digest([f]) == before


def test_bad_rows_skip_policy_runs_on(tmp_path, capsys, caplog):
    args = own_task(tmp_path, GOOD[:2] + ["{not json", json.dumps({"question": "x"})] + GOOD[2:], bad_rows="skip")
    assert main(args + ["--until", "teacher-sample"]) == 0
    assert "skipped 2 bad rows" in caplog.text


def test_non_utf8_and_empty_and_choice_letter(tmp_path, capsys):
    f = tmp_path / "data" / "test.jsonl"
    args = own_task(tmp_path, b'{"question": "caf\xe9", "answer": 1}\n')
    before = digest([f])
    fails(capsys, args, 1, "test.jsonl:1: not UTF-8")
    assert digest([f]) == before
    args = own_task(tmp_path, [])
    fails(capsys, args, 1, "split is empty")
    assert f.read_bytes() == b""
    rows = [json.dumps({"question": "q", "options": ["a", "b"], "answer": "C"})] + [
        json.dumps({"question": f"q{i}", "options": ["a", "b"], "answer": "A"}) for i in range(4)]
    args = own_task(tmp_path, rows, answer_type="choice")
    before = digest([f])
    fails(capsys, args, 1, "test.jsonl:1: answer 'C' is not one of the options A..B")
    assert digest([f]) == before


def test_config_errors_exit_2_and_leave_the_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rl:\n  kl_coeff: 0.1\n")
    before = digest([cfg])
    fails(capsys, ["run", "--config", str(cfg), "--run-dir", str(tmp_path / "r")], 2, "rl.kl_coeff: unknown key")
    cfg.write_text("sft:\n  epochs: many\n")
    fails(capsys, ["run", "--config", str(cfg), "--run-dir", str(tmp_path / "r")], 2, "sft.epochs")
    fails(capsys, ["run", "--run-dir", str(tmp_path / "r"), "--rl.steps", "-3"], 2, "rl.steps")
    assert not (tmp_path / "r").exists()
    cfg.write_text("rl:\n  kl_coeff: 0.1\n")
    assert digest([cfg]) == before


def test_missing_model_path(tmp_path, capsys):
    fails(capsys, ["run", "--run-dir", str(tmp_path / "r"), *MICRO, "--models.teacher", str(tmp_path / "nope")],
          1, f"cannot load tokenizer from '{tmp_path / 'nope'}'", "check models.teacher")


def test_tokenizer_without_pad_token_is_handled(tmp_path, other_tokenizer):
    from rewdistill.models.load import load_tokenizer
    from tests.conftest import save_tiny

    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    cfg = json.loads((Path(path) / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (Path(path) / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(path)
    assert tok.pad_token == tok.eos_token
    assert main(["run", "--run-dir", str(tmp_path / "r"), *MICRO, "--models.student", path, "--until", "sft"]) == 0


def test_no_question_reaches_the_vote_share(tmp_path, capsys):
    fails(capsys, ["run", "--run-dir", str(tmp_path / "r"), *MICRO, "--teacher_sample.temperatures", "[8.0]",
                   "--pseudo_label.min_vote_share", "0.9"], 1,
          "no question reached the minimum vote share 0.9", "dropped", "--pseudo_label.min_vote_share")


def test_run_dir_of_another_config_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["run", "--run-dir", str(run_dir), *MICRO, "--until", "pseudo-label"]) == 0
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"]  # .lock: the holder's pid
    before = digest(files)
    fails(capsys, ["run", "--run-dir", str(run_dir), *MICRO, "--teacher_sample.max_new_tokens", "40"], 2,
          "was made with another config", "teacher-sample", "--force")
    assert digest(files) == before


def test_disk_full_while_writing(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "r"
    assert main(["run", "--run-dir", str(run_dir), *MICRO, "--until", "teacher-sample"]) == 0
    kept = digest([run_dir / "teacher_samples.jsonl"])
    import rewdistill.stages.pseudo_label as pl

    def full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pl, "write_jsonl", full)
    fails(capsys, ["run", "--run-dir", str(run_dir), *MICRO], 1, "disk full while writing", "labels.jsonl",
          "rerun the same command")
    assert digest([run_dir / "teacher_samples.jsonl"]) == kept  # finished work is untouched
    monkeypatch.undo()
    assert main(["run", "--run-dir", str(run_dir), *MICRO, "--until", "pseudo-label"]) == 0


@pytest.mark.parametrize("env, needle", [("ACCELERATE_USE_FSDP", "asks for FSDP"),
                                         ("ACCELERATE_USE_DEEPSPEED", "asks for DeepSpeed")])
def test_a_sharding_launch_that_cannot_shard_is_refused_up_front(tmp_path, capsys, monkeypatch, env, needle):
    """An accelerate FSDP / DeepSpeed config on CPU processes (or DeepSpeed not installed) is one line before any
    stage, not a run that silently trains with plain DDP."""
    monkeypatch.setenv(env, "true")
    run = tmp_path / "run"
    fails(capsys, ["run", "--run-dir", str(run), *MICRO, "--models.device", "cpu"], 2, needle)
    assert not run.exists()  # nothing ran
