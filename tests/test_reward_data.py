"""What the reward-model stage trains on: by default (`reward_model.duplicates drop`) one copy of each distinct
(question, response text) among the labelled teacher and student responses; `keep`: every row."""
from __future__ import annotations

import json

from rewdistill.cli import main
from rewdistill.stages import reward_model
from tests.conftest import MICRO


def test_reward_model_trains_on_each_distinct_response_once_by_default_and_on_all_with_keep(tmp_path, monkeypatch):
    seen = []

    def capture(model, items, *args, **kwargs):
        seen.append([(it["qid"], tuple(it["pair"][1]), it["label"]) for it in items])
        return model

    monkeypatch.setattr(reward_model, "train_reward_model", capture)
    monkeypatch.setattr(reward_model, "save_reward_model", lambda *a, **k: None)
    # T = 0.1: the micro teacher repeats itself, as the shipped one does at low temperature
    args = [*MICRO, "--teacher_sample.temperatures", "[0.1]", "--teacher_sample.n_per_temperature", "4",
            "--until", "reward-model"]
    assert main(["run", "--run-dir", str(tmp_path / "drop"), *args]) == 0
    assert main(["run", "--run-dir", str(tmp_path / "keep"), *args, "--reward_model.duplicates", "keep"]) == 0
    drop, keep = seen
    rows = []
    for name in ["teacher_labelled.jsonl", "student_samples.jsonl"]:
        rows += [json.loads(line) for line in (tmp_path / "keep" / name).read_text().splitlines()]
    texts = [(r["qid"], r["text"]) for r in rows]
    assert len(keep) == len(texts) > len(set(texts)) == len(drop)  # there were repeats, and only they went
    summary = json.loads((tmp_path / "drop" / "manifest.json").read_text())["stages"]["reward-model"]["summary"]
    teacher = (tmp_path / "keep" / "teacher_labelled.jsonl").read_text().splitlines()
    n_teacher = len({(r["qid"], r["text"]) for r in rows[: len(teacher)]})  # teacher rows first, then the student's
    assert f"on {n_teacher} teacher + {len(drop) - n_teacher} student responses" in summary
    assert f"{len(keep) - len(drop)} repeats dropped" in summary


def test_reward_model_duplicates_keep_is_left_out_of_the_hash_and_drop_reruns_the_reward_model():
    """Runs made before `reward_model.duplicates` existed (every row kept) keep their stage hashes."""
    from rewdistill.config_files import load_config
    from rewdistill.stage_list import hashed, stage_hashes

    keep = load_config(None, {"reward_model.duplicates": "keep"})
    assert "duplicates" not in hashed(keep.reward_model)
    base, drop = stage_hashes(keep), stage_hashes(load_config(None, {}))
    assert drop["sft"] == base["sft"] and drop["reward-model"] != base["reward-model"]
