"""What the SFT stage trains on: label-1, finished teacher responses; with `sft.duplicates drop`, one copy of each."""
from __future__ import annotations

import json

from rewdistill.cli import main
from rewdistill.stages import sft
from tests.conftest import MICRO


def test_distinct_keeps_the_first_copy_per_question_and_text():
    rows = [{"qid": "a", "text": "x", "n": 0}, {"qid": "a", "text": "x", "n": 1}, {"qid": "b", "text": "x", "n": 2},
            {"qid": "a", "text": "y", "n": 3}, {"qid": "b", "text": "x", "n": 4}]
    assert [r["n"] for r in sft.distinct(rows)] == [0, 2, 3]  # same text under another question is kept


def test_sft_stage_trains_on_each_distinct_response_once_with_drop(tmp_path, monkeypatch):
    seen = []

    def capture(model, pairs, *args, **kwargs):
        seen.append(list(pairs))
        return model

    monkeypatch.setattr(sft, "train_sft", capture)
    base = tmp_path / "keep"
    # T = 0.1: the micro teacher repeats itself, as the shipped one does at low temperature
    args = [*MICRO, "--teacher_sample.temperatures", "[0.1]", "--teacher_sample.n_per_temperature", "4"]
    assert main(["run", "--run-dir", str(base), *args, "--until", "sft"]) == 0
    assert main(["run", "--run-dir", str(tmp_path / "drop"), *args, "--sft.duplicates", "drop", "--until", "sft"]) == 0
    keep, drop = seen
    rows = [json.loads(line) for line in (base / "teacher_labelled.jsonl").read_text().splitlines()]
    used = [(r["qid"], r["text"]) for r in rows if r["label"] == 1 and r["finished"]]
    assert len(keep) == len(used) > len(set(used)) == len(drop)  # there were repeats, and only they went
    assert len(set(map(str, drop))) == len(drop)


def test_duplicates_keep_is_left_out_of_the_sft_hash_and_drop_reruns_sft():
    """Runs made before `sft.duplicates` existed (every response kept) keep their stage hashes."""
    from rewdistill.config_files import load_config
    from rewdistill.pipeline import hashed, stage_hashes

    keep = load_config(None, {"sft.duplicates": "keep"})
    assert "duplicates" not in hashed(keep.sft)
    base, drop = stage_hashes(keep), stage_hashes(load_config(None, {"sft.duplicates": "drop"}))
    assert drop["pseudo-label"] == base["pseudo-label"] and drop["sft"] != base["sft"]
