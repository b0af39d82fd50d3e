"""What the SFT stage trains on: label-1, finished teacher responses; with `sft.duplicates drop`, one copy of each."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rewdistill import labels
from rewdistill.cli import main
from rewdistill.stages import sft
from rewdistill.train.sft import train_sft
from tests.conftest import MICRO


def test_distinct_keeps_the_first_copy_per_question_and_text():
    rows = [{"qid": "a", "text": "x", "n": 0}, {"qid": "a", "text": "x", "n": 1}, {"qid": "b", "text": "x", "n": 2},
            {"qid": "a", "text": "y", "n": 3}, {"qid": "b", "text": "x", "n": 4}]
    assert [r["n"] for r in labels.distinct(rows)] == [0, 2, 3]  # same text under another question is kept


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
    from rewdistill.stage_list import hashed, stage_hashes

    keep = load_config(None, {"sft.duplicates": "keep"})
    assert "duplicates" not in hashed(keep.sft)
    base, drop = stage_hashes(keep), stage_hashes(load_config(None, {"sft.duplicates": "drop"}))
    assert drop["pseudo-label"] == base["pseudo-label"] and drop["sft"] != base["sft"]


def test_a_weighted_pair_counts_as_its_copies_in_the_sft_loss():
    """weights [2, 1] on (a, b) give the loss and gradient of the plain batch (a, a, b)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rewdistill.train.sft import sft_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, pad_token_id=0))
    a, b = ([3, 4, 5], [6, 7, 8, 9]), ([3, 4], [10, 11])
    plain = sft_loss(model, [a, a, b], 0, "cpu")
    weighted = sft_loss(model, [a, b], 0, "cpu", weights=[2.0, 1.0])
    unweighted = sft_loss(model, [a, b], 0, "cpu")
    assert torch.allclose(plain, weighted, atol=1e-6) and not torch.allclose(plain, unweighted, atol=1e-3)
    g_plain = torch.autograd.grad(plain, list(model.parameters()))
    g_weighted = torch.autograd.grad(weighted, list(model.parameters()))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(g_plain, g_weighted))


def test_sft_stage_with_weight_trains_each_distinct_response_once_weighted_by_its_count(tmp_path, monkeypatch):
    seen = []

    def capture(model, pairs, *args, **kwargs):
        seen.append((list(pairs), kwargs["weights"]))
        return model

    monkeypatch.setattr(sft, "train_sft", capture)
    args = [*MICRO, "--teacher_sample.temperatures", "[0.1]", "--teacher_sample.n_per_temperature", "4"]
    assert main(["run", "--run-dir", str(tmp_path), *args, "--sft.duplicates", "weight", "--until", "sft"]) == 0
    (pairs, weights), = seen
    rows = [json.loads(line) for line in (tmp_path / "teacher_labelled.jsonl").read_text().splitlines()]
    used = [(r["qid"], r["text"]) for r in rows if r["label"] == 1 and r["finished"]]
    assert len(pairs) == len(set(used)) < len(used) and sum(weights) == len(used) and max(weights) > 1


def test_sft_weights_are_refused_over_several_processes():
    """The weighted token mean is not made global over processes: train_sft says so before any step."""
    two = SimpleNamespace(num_processes=2)
    with pytest.raises(RuntimeError, match="one process"):
        train_sft(None, [([1], [2])] * 4, 0, epochs=1, lr=1e-3, batch_size=4, warmup_frac=0.0, weight_decay=0.0,
                  accelerator=two, seed=0, log=print, weights=[1.0] * 4)


@pytest.mark.parametrize("chat", [False, True])
def test_pairs_tokenise_as_pair_ids_row_by_row(chat):
    """`PromptFormat.pairs` tokenises each prompt once and the responses in one batch: the same ids, row by row."""
    import copy

    from rewdistill.models.load import load_prompt_format
    from rewdistill.models.prompt import PromptFormat

    tok = copy.deepcopy(load_prompt_format("zoo:teacher").tokenizer)
    if chat:
        tok.chat_template = "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}<assistant>"
    fmt = PromptFormat.from_tokenizer(tok)
    assert fmt.chat == chat
    prompts = {"q1": "What is 2 + 3?", "q2": "Which is red? (A) sky (B) rose"}
    rows = [{"qid": "q1", "text": " The answer is 5."}, {"qid": "q2", "text": ""}, {"qid": "q1", "text": "5\n"},
            {"qid": "q2", "text": "  (B) rose  "}]
    got = fmt.pairs(prompts, rows)
    assert got == [fmt.pair_ids(prompts[r["qid"]], r["text"]) for r in rows]
    got[0][0].append(-1)  # each row its own prompt list: changing one leaves the other rows of the question alone
    assert got[2][0] == fmt.prompt_ids(prompts["q1"])
    assert fmt.pairs(prompts, []) == []
