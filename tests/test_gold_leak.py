"""No training stage reads gold answers: poison every gold answer and solution of the train and validation splits,
and every training artifact must stay byte for byte the same. A competent student (the shipped teacher) makes
labels and rewards vary, and a positive control (`rl.reward gold`, the oracle) shows the comparison sees a leak."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from rewdistill.cli import main
from rewdistill.tasks.tiny_arith import TinyArith
from rewdistill.tasks.tiny_choice import TinyChoice
from tests.conftest import MICRO

pytestmark = pytest.mark.slow  # 32 micro RL runs with a competent student: minutes; .ci/run runs it after the suite

SOURCES = ["rm", "rm-vote", "pseudo-label", "hybrid", "teacher-judge", "teacher-kl", "rm+teacher-kl"]
COMPETENT = [*MICRO, "--models.student", "zoo:teacher", "--rl.rounds", "2", "--rl.group_size", "2",
             "--rl.watch_every", "0", "--task.n_selection", "4"]
TASKS = {"tiny-arith": TinyArith, "tiny-choice": TinyChoice}
EVAL_OUTPUTS = {"results.json", "report.md", "eval_samples.jsonl", "accuracy.png", "rl_curves.png", "manifest.json",
                ".lock"}


def poison(example):
    """The same question with a wrong gold answer and solution."""
    if example.options:  # multiple choice: another letter
        letters = "ABCDEFGHIJ"[: len(example.options)]
        wrong = letters[(letters.index(example.answer) + 1) % len(letters)]
    else:
        wrong = "-12345"
    return dataclasses.replace(example, answer=wrong, solution=f"poison #### {wrong}")


def training_files(run_dir: Path) -> dict[str, bytes]:
    """Every file a training stage wrote (all but evaluate's outputs and the bookkeeping)."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in EVAL_OUTPUTS}


def runs(tmp: Path, task: str, poisoned: bool, monkeypatch) -> dict[str, dict[str, bytes]]:
    """Per reward source (and the gold oracle): the training files of a run up to the last round's rl."""
    with monkeypatch.context() as m:
        if poisoned:
            cls = TASKS[task]
            original = cls.load

            def load(self, split):
                rows = original(self, split)
                return [poison(e) for e in rows] if split in ("train", "validation") else rows

            m.setattr(cls, "load", load)
        base = tmp / f"{task}-{poisoned}-base"
        assert main(["run", "--run-dir", str(base), *COMPETENT, "--task.name", task, "--until", "reward-model"]) == 0
        out = {}
        for source in [*SOURCES, "gold"]:
            d = tmp / f"{task}-{poisoned}-{source}"
            shutil.copytree(base, d)
            assert main(["run", "--run-dir", str(d), "--force", *COMPETENT, "--task.name", task, "--rl.reward", source,
                         "--until", "rl"]) == 0
            out[source] = training_files(d)
    return out


@pytest.mark.parametrize("task", ["tiny-arith", "tiny-choice"])
def test_no_training_stage_reads_gold_answers(tmp_path, monkeypatch, task):
    clean, poisoned = runs(tmp_path, task, False, monkeypatch), runs(tmp_path, task, True, monkeypatch)
    for source in SOURCES:
        a, b = clean[source], poisoned[source]
        assert "round2/student_rl/model.safetensors" in a and "labels.jsonl" in a  # both rounds ran
        assert a.keys() == b.keys(), source
        changed = [name for name in a if a[name] != b[name]]
        assert not changed, f"{source}: gold leaked into {changed}"
    # the labels and rewards the competent student meets are not all the same (the test can see a difference) ...
    rewards = {line for line in clean["rm"]["rl_metrics.jsonl"].decode().splitlines() if '"reward"' in line}
    assert len(rewards) >= 2
    # ... and the positive control: the oracle reads the (poisoned) gold, so its training files must differ
    leaked = [n for n in clean["gold"] if clean["gold"][n] != poisoned["gold"].get(n)]
    assert "rl_metrics.jsonl" in leaked and "student_rl/model.safetensors" in leaked, leaked
