"""No training stage reads gold answers. Every gold answer and solution of every split (train, validation and test) is
poisoned where the tiny tasks make them (`tasks.base.generated_splits`), so any route to a gold answer (`Task.load`,
`task._splits`, ...) meets the poison; every training artifact must stay byte for byte the same. The reward-hacking
watch is on, as by default: it reads validation gold, so the gold accuracy it logs is the one value allowed to change.
A competent student (the shipped teacher) makes the rewards vary, and two positive controls show that the comparison
sees gold: the watch's logged gold accuracy changes, and so does everything the `gold` oracle (`rl.reward gold`) trains.

To cover a new reward source: add it to `train.rewards.SOURCES` (read here). A new `reward_model.kind`: nothing to do,
the config's choices are read (`RM_VARIANTS`); a source whose use of the reward model depends on its kind goes in
`EVERY_KIND`."""
from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path

import pytest

from rewdistill.cli import main
from rewdistill.config import RewardModelCfg
from rewdistill.tasks import base, get_task, tiny_arith, tiny_choice
from rewdistill.train.rewards import SOURCES as ALL_SOURCES
from tests.conftest import MICRO

pytestmark = pytest.mark.slow  # micro RL runs with a competent student: minutes; .ci/run runs it after the suite

SOURCES = [s for s in ALL_SOURCES if s != "gold"]  # every reward source but the oracle (the positive control)
# Reward model variants: every `reward_model.kind` the config takes (the default first). The first runs every source;
# the others retrain the reward model and run the sources in EVERY_KIND (what reads the reward model differs by kind)
_kind = RewardModelCfg.model_fields.get("kind")
RM_VARIANTS = {k: ["--reward_model.kind", k] for k in sorted(typing.get_args(_kind.annotation),
                                                             key=lambda k: k != _kind.default)} if _kind else {"rm": []}
EVERY_KIND = ["rm"]
# tiny-arith runs every reward source with every kind; tiny-choice (whose gold is a letter, poisoned the same way at the
# source) the default kind with the sources whose code depends on the task's answers, to keep CI's time in bounds
TASKS = {"tiny-arith": None, "tiny-choice": ["rm", "pseudo-label"]}
# the shipped teacher as the student, kept competent through the micro SFT (its default lr un-teaches it); one PPO
# minibatch per epoch (a quarter of MICRO's optimiser steps); the watch at the start of each round and after its last
# step (`rl.watch_every` = `rl.steps`: both places the rl stage runs it)
COMPETENT = [*MICRO, "--models.student", "zoo:teacher", "--sft.lr", "1e-5", "--rl.rounds", "2", "--rl.group_size", "2",
             "--rl.minibatch", "8", "--rl.watch_every", "2", "--rl.watch_n", "8", "--task.n_selection", "4"]
WATCHED = 2 * 2  # watch rows per run: 2 rounds x (start + after step 2)
EVAL_OUTPUTS = {"results.json", "report.md", "eval_samples.jsonl", "accuracy.png", "rl_curves.png", "manifest.json",
                ".lock"}
WATCH_GOLD = "watch_val_gold_accuracy"  # the one logged value that reads gold


def poison(example):
    """The same question with a wrong gold answer and solution."""
    if example.options:  # multiple choice: another letter
        letters = "ABCDEFGHIJ"[: len(example.options)]
        wrong = letters[(letters.index(example.answer) + 1) % len(letters)]
    else:
        wrong = "-12345"
    return dataclasses.replace(example, answer=wrong, solution=f"poison #### {wrong}")


def poison_gold_at_the_source(m: pytest.MonkeyPatch) -> None:
    """Every split of the tiny tasks comes out of `generated_splits` with every answer and solution poisoned."""
    real = base.generated_splits

    def poisoned(make, rng):
        return {split: [poison(e) for e in rows] for split, rows in real(make, rng).items()}

    for module in (base, tiny_arith, tiny_choice):
        m.setattr(module, "generated_splits", poisoned)


def check_every_route_is_poisoned(task: str, clean) -> None:
    """Under the poison: the same questions, and every gold answer wrong, by every route a stage could take."""
    t = get_task(task)
    for split in base.SPLIT_SIZES:
        assert t.questions(split) == clean.questions(split), split
        for rows in (t.load(split), t._splits[split]):
            assert all(p.answer != c.answer and "poison" in p.solution for p, c in zip(rows, clean.load(split))), split


def read_run(run_dir: Path) -> tuple[dict[str, bytes], list, list]:
    """(every file a training stage wrote, byte for byte, with the watch's gold accuracy taken out of the RL logs;
    that accuracy, per logged row; the rewards logged, per step), over both rounds."""
    files, watch, rewards = {}, [], []
    for p in sorted(run_dir.rglob("*")):
        if not p.is_file() or p.name in EVAL_OUTPUTS:
            continue
        data = p.read_bytes()
        if p.name == "rl_metrics.jsonl":
            rows = [json.loads(line) for line in data.decode().splitlines()]
            watch += [row.pop(WATCH_GOLD) for row in rows if WATCH_GOLD in row]
            rewards += [row["reward"] for row in rows if "reward" in row]
            data = "\n".join(json.dumps(row) for row in rows).encode()
        files[p.relative_to(run_dir).as_posix()] = data
    return files, watch, rewards


def runs(tmp: Path, task: str, poisoned: bool, monkeypatch) -> dict[tuple[str, str], tuple]:
    """`read_run` of a run up to the last round's rl, per (reward model variant, reward source): every source with the
    first variant, those in EVERY_KIND with the others (or only TASKS[task] with the first, where it names some). One
    run up to the reward model for the first variant; the others start from a copy of it and retrain only the reward
    model."""
    out = {}
    with monkeypatch.context() as m:
        if poisoned:
            clean = get_task(task)
            poison_gold_at_the_source(m)
            check_every_route_is_poisoned(task, clean)
        first = None
        only = TASKS[task]
        for variant, extra in list(RM_VARIANTS.items())[: 1 if only else None]:
            args = [*COMPETENT, *extra, "--task.name", task]
            base_dir = tmp / f"{task}-{poisoned}-{variant}-base"
            if first is not None:
                shutil.copytree(first, base_dir)
            assert main(["run", "--run-dir", str(base_dir), "--force", *args, "--until", "reward-model"]) == 0
            sources = [*(only or SOURCES), "gold"] if first is None else EVERY_KIND
            first = first or base_dir
            for source in sources:
                d = tmp / f"{task}-{poisoned}-{variant}-{source}"
                shutil.copytree(base_dir, d)
                assert main(["run", "--run-dir", str(d), "--force", *args, "--rl.reward", source, "--until", "rl"]) == 0
                out[variant, source] = read_run(d)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_no_training_stage_reads_gold_answers(tmp_path, monkeypatch, task):
    clean, poisoned = runs(tmp_path, task, False, monkeypatch), runs(tmp_path, task, True, monkeypatch)
    oracle = (next(iter(RM_VARIANTS)), "gold")
    assert clean.keys() == poisoned.keys()
    for key in clean.keys() - {oracle}:
        (a, watch_a, _), (b, watch_b, _) = clean[key], poisoned[key]
        assert "round2/student_rl/model.safetensors" in a and "labels.jsonl" in a  # both rounds ran
        assert a.keys() == b.keys(), key
        changed = [name for name in a if a[name] != b[name]]
        assert not changed, f"{key}: gold leaked into {changed}"
        # the watch ran (at the start of each round and after its last step) and read the poisoned gold
        assert len(watch_a) == len(watch_b) == WATCHED, (key, watch_a)
        assert watch_a != watch_b, (key, watch_a, watch_b)
    for variant in {v for v, _ in clean}:  # the rewards the competent student meets vary (a leak would show) ...
        assert len(set(clean[variant, "rm"][2])) >= 2, (variant, clean[variant, "rm"][2])
    # ... and the positive control: the oracle reads the (poisoned) gold, so what it trains must differ
    (a, _, rewards_a), (b, _, rewards_b) = clean[oracle], poisoned[oracle]
    leaked = [n for n in a if a[n] != b.get(n)]
    assert "rl_metrics.jsonl" in leaked and "student_rl/model.safetensors" in leaked, leaked
    assert rewards_a != rewards_b  # its logged reward values
