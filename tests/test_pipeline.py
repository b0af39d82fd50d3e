"""The whole pipeline end to end on a micro configuration, through the CLI."""
from __future__ import annotations

import json
import time

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rewdistill.cli import main
from rewdistill.io import read_jsonl
from rewdistill.models.load import pick_dtype
from rewdistill.tasks import get_task
from tests.conftest import MICRO

ARTIFACTS = ["questions.jsonl", "teacher_samples.jsonl", "labels.jsonl", "teacher_labelled.jsonl",
             "pseudo_label_stats.json", "student_samples.jsonl", "sft_metrics.jsonl", "reward_model_metrics.jsonl",
             "rl_metrics.jsonl", "eval_samples.jsonl", "results.json", "report.md", "manifest.json", "config.yaml",
             "accuracy.png"]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, tiny_qwen_student):
    """One micro run: the shipped teacher, and a random-init Qwen2 student with a *different* tokenizer."""
    run_dir = tmp_path_factory.mktemp("run")
    args = ["run", "--run-dir", str(run_dir), "--models.student", tiny_qwen_student, *MICRO]
    STARTED.append(time.time())
    assert main(args) == 0
    return run_dir, args


STARTED: list[float] = []  # when micro_run began: no stage of it (or of a later rerun) can have taken longer


def test_every_artifact_is_written(micro_run):
    run_dir, _ = micro_run
    for name in ARTIFACTS:
        assert (run_dir / name).exists(), name
    for d in ["student_sft", "reward_model", "student_rl"]:
        assert (run_dir / d / "model.safetensors").exists(), d


def test_results_are_fractions_and_consistent_with_samples(micro_run):
    run_dir, _ = micro_run
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res) >= {"task", "seed", "accuracy", "diagnostics", "seconds"} and res["maj_k"] == 2
    assert set(res["accuracy"]) == {"teacher_greedy", "teacher_maj_at_k", "student_base", "student_sft", "student_rl"}
    samples = read_jsonl(run_dir / "eval_samples.jsonl")
    teacher = [s for s in samples if s["model"] == "teacher_greedy"]
    assert len(teacher) == res["n_test"] == 6
    assert res["accuracy"]["teacher_greedy"] == sum(s["correct"] for s in teacher) / 6
    assert res["unparsable"]["teacher_greedy"] == sum(s["extracted"] is None for s in teacher)
    d = res["diagnostics"]  # the accuracies among them: recomputed in the next test
    # best-of-K ranked by the reward model and by the teacher's likelihood, on the same samples
    rm_rank, teacher_rank = d["ranking_student_sft"], d["ranking_student_sft_teacher_likelihood"]
    assert rm_rank["k"] == teacher_rank["k"] == 2 and rm_rank["pass_at_k"] == teacher_rank["pass_at_k"]
    assert "teacher's mean token log-prob" in (run_dir / "report.md").read_text()
    labels = read_jsonl(run_dir / "labels.jsonl")
    assert d["questions_total"] == len(labels) == 12 and d["questions_kept"] == sum(r["kept"] for r in labels) > 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert res["seconds"] == {k: v["seconds"] for k, v in manifest["stages"].items()}
    # each stage's wall-clock seconds (rounded to 0.1: a micro stage on a fast machine may read 0.0), together more
    # than nothing and no more than has passed
    assert list(res["seconds"]) == ["teacher-sample", "pseudo-label", "sft", "student-sample", "reward-model", "rl",
                                    "evaluate"]
    assert all(v >= 0 for v in res["seconds"].values()) and sum(res["seconds"].values()) > 0, res["seconds"]
    rounding = 0.05 * len(res["seconds"])  # each stage's seconds are rounded to 0.1
    assert sum(res["seconds"].values()) <= time.time() - STARTED[0] + rounding, res["seconds"]


def test_pseudo_labels_are_majority_votes_of_teacher_answers(micro_run):
    run_dir, _ = micro_run
    samples = read_jsonl(run_dir / "teacher_samples.jsonl")
    assert len(samples) == 12 * 4 and {s["temperature"] for s in samples} == {0.8, 1.2}
    for lab in read_jsonl(run_dir / "labels.jsonl"):
        answers = [s["answer"] for s in samples if s["qid"] == lab["qid"]]
        if lab["pseudo_answer"] is not None:
            assert answers.count(lab["pseudo_answer"]) / len(answers) == lab["vote_share"]
            assert all(answers.count(a) <= answers.count(lab["pseudo_answer"]) for a in answers if a)


def test_saved_models_load_with_plain_transformers_and_rl_changed_the_policy(micro_run):
    run_dir, _ = micro_run
    sft = AutoModelForCausalLM.from_pretrained(run_dir / "student_sft")
    rl = AutoModelForCausalLM.from_pretrained(run_dir / "student_rl")
    # the default reward model (likelihood kind) is a plain causal LM; its score, by the formula its config names,
    # equals the score the pipeline gave a test response
    rm = AutoModelForCausalLM.from_pretrained(run_dir / "reward_model").eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "reward_model")
    assert rm.config.reward_kind == "likelihood"
    row = next(r for r in read_jsonl(run_dir / "eval_samples.jsonl") if "rm_score" in r)
    task = get_task("tiny-arith")
    example = next(e for e in task.load("test") if e.qid == row["qid"])
    prompt = tok(task.prompt(example), add_special_tokens=False)["input_ids"]  # plain text prompt (no chat template)
    resp = tok(" " + row["text"].lstrip(), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logp = torch.log_softmax(rm(input_ids=torch.tensor([prompt + resp])).logits[0, :-1], -1)
    mean = sum(logp[len(prompt) - 1 + t, resp[t]].item() for t in range(len(resp))) / len(resp)
    # evaluation scored in models.dtype: fp32, or bf16 where `auto` picks it (a CPU with AMX): equal to its rounding
    tol = 1e-4 if pick_dtype("auto", "cpu") == torch.float32 else 2e-2
    assert abs(rm.config.reward_scale * mean + rm.config.reward_bias - row["rm_score"]) < tol
    diffs = [(a - b).abs().max().item() for a, b in zip(sft.parameters(), rl.parameters())]
    assert max(diffs) > 0
    rows = read_jsonl(run_dir / "rl_metrics.jsonl")
    ppo = [r for r in rows if "approx_kl" in r]
    assert len(ppo) == 2
    for r in ppo:
        for k in ["reward", "kl", "approx_kl", "clipfrac", "entropy", "value_loss", "response_length"]:
            assert torch.isfinite(torch.tensor(r[k])), k


def test_accuracies_recomputed_from_the_run_files_against_gold_loaded_independently(micro_run):
    """results.json's pseudo-label and model accuracies, recomputed from labels.jsonl / eval_samples.jsonl texts with
    a regex of this test's own and gold from the task (not evaluate's `correct` flags)."""
    import re

    from rewdistill.tasks import get_task

    run_dir, _ = micro_run
    res = json.loads((run_dir / "results.json").read_text())
    task = get_task("tiny-arith")
    train = {e.qid: e.answer for e in task.load("train")}
    test = {e.qid: e.answer for e in task.load("test")[: res["n_test"]]}

    def answer(text: str):  # the number after the last ####
        found = [n.replace(",", "") for n in re.findall(r"####\s*(-?[\d,]+)", text)]
        return str(int(found[-1])) if found and found[-1].lstrip("-").isdigit() else None

    labels = read_jsonl(run_dir / "labels.jsonl")
    kept = [r for r in labels if r["kept"]]
    want = sum(r["pseudo_answer"] == train[r["qid"]] for r in kept) / len(kept)
    d = res["diagnostics"]
    assert d["pseudo_label_accuracy_kept"] == d["pseudo_label_accuracy"] == pytest.approx(want)
    assert d["pseudo_label_accuracy_all"] == pytest.approx(
        sum(r["pseudo_answer"] == train[r["qid"]] for r in labels) / len(labels))
    samples = read_jsonl(run_dir / "eval_samples.jsonl")
    for model in ["teacher_greedy", "student_base", "student_sft", "student_rl"]:
        rows = [s for s in samples if s["model"] == model]
        assert len(rows) == len(test)
        want = sum(answer(s["text"]) == test[s["qid"]] for s in rows) / len(rows)
        assert res["accuracy"][model] == pytest.approx(want), model
    # maj@K: per question, the most frequent answer of its K samples (the first seen of equal counts)
    votes: dict[str, list] = {}
    for s in samples:
        if s["model"] == "teacher_maj" and answer(s["text"]) is not None:
            votes.setdefault(s["qid"], []).append(answer(s["text"]))
    assert all(sum(s["model"] == "teacher_maj" and s["qid"] == q for s in samples) == res["maj_k"] for q in test)
    majority = {q: max(a, key=a.count) for q, a in votes.items()}  # max keeps the first of equal counts
    want = sum(majority.get(q) == gold for q, gold in test.items()) / len(test)
    assert res["accuracy"]["teacher_maj_at_k"] == pytest.approx(want)
    # the reward model against gold: its score > 0 read as "correct", on every scored test response
    judged = [s for s in samples if "rm_score" in s]
    assert {s["model"] for s in judged} == {"teacher_maj", "student_sft", "student_rl"}
    assert d["reward_model_eval_responses"] == len(judged) == 6 * (2 + 1 + 1)
    right = [answer(s["text"]) == test[s["qid"]] for s in judged]
    want = sum((s["rm_score"] > 0) == ok for s, ok in zip(judged, right)) / len(judged)
    assert d["reward_model_accuracy"] == pytest.approx(want)
    pos = [s["rm_score"] for s, ok in zip(judged, right) if ok]
    neg = [s["rm_score"] for s, ok in zip(judged, right) if not ok]
    want = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg)) if pos and neg else None
    assert d["reward_model_auc"] == (None if want is None else pytest.approx(want))


def test_rerun_skips_done_stages_and_a_changed_stage_reruns_it_and_later_with_force(micro_run, caplog):
    run_dir, args = micro_run
    before = json.loads((run_dir / "manifest.json").read_text())["stages"]
    caplog.set_level("INFO", logger="rewdistill")
    assert main(args) == 0
    assert caplog.text.count("done already") == 7
    same = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert same == before
    caplog.clear()
    assert main(args + ["--rl.kl_coef", "0.3"]) == 2  # another config: refused, nothing touched
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == before
    assert main(args + ["--rl.kl_coef", "0.3", "--force"]) == 0
    assert caplog.text.count("done already") == 5
    after = json.loads((run_dir / "manifest.json").read_text())["stages"]
    for s in ["teacher-sample", "pseudo-label", "sft", "student-sample", "reward-model"]:
        assert after[s] == before[s]
    for s in ["rl", "evaluate"]:
        assert after[s]["hash"] != before[s]["hash"]


def test_sft_and_reward_model_with_bf16_autocast_and_accumulation(tmp_path, tiny_qwen_student):
    args = ["run", "--run-dir", str(tmp_path), "--models.student", tiny_qwen_student, *MICRO,
            "--sft.mixed_precision", "bf16", "--sft.grad_accum", "2", "--sft.batch_size", "2",
            "--reward_model.mixed_precision", "bf16", "--reward_model.grad_accum", "2", "--until", "reward-model"]
    assert main(args) == 0
    label1 = sum(r["label"] == 1 and r["finished"] for r in read_jsonl(tmp_path / "teacher_labelled.jsonl"))
    sft_rows = read_jsonl(tmp_path / "sft_metrics.jsonl")
    assert len(sft_rows) == max(1, (label1 // 2) // 2)  # micro-batches of 2, two per optimiser step
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in sft_rows)
    assert (tmp_path / "reward_model" / "model.safetensors").exists()
    assert not (tmp_path / "results.json").exists()  # --until stopped before rl / evaluate


def test_the_saved_reward_model_scores_with_plain_transformers_as_in_the_pipeline(tmp_path, other_tokenizer):
    """A student whose tokenizer pads with EOS (as Llama 3's and SmolLM2's do): transformers' sequence
    classification scores the rightmost token that is not the pad, so the saved reward model must not pad with
    the EOS that ends every sequence it scored."""
    import copy

    from rewdistill.models.forward import score_sequences
    from rewdistill.models.load import load_prompt_format
    from tests.conftest import save_tiny

    tok = copy.deepcopy(other_tokenizer)
    tok.pad_token = tok.eos_token
    student = save_tiny("llama", tok, tmp_path / "student")
    run_dir = tmp_path / "run"
    assert main(["run", "--run-dir", str(run_dir), "--models.student", student, *MICRO, "--until", "reward-model",
                 "--reward_model.kind", "scalar", "--reward_model.init", "sft"]) == 0
    rm_dir = run_dir / "reward_model"
    rm, saved = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval(), AutoTokenizer.from_pretrained(rm_dir)
    assert saved.pad_token_id != saved.eos_token_id and rm.config.pad_token_id == saved.pad_token_id
    assert saved.get_vocab() == tok.get_vocab() and saved.eos_token_id == tok.eos_token_id  # only the pad differs
    fmt = load_prompt_format(str(rm_dir))
    assert load_prompt_format(student).same_tokens(fmt)  # so RL still scores the policy's own tokens with it
    prompts = {q["qid"]: q["prompt"] for q in read_jsonl(run_dir / "questions.jsonl")}
    seqs = fmt.sequences(prompts, read_jsonl(run_dir / "student_samples.jsonl")[:6])  # each ends with EOS
    assert len({len(s) for s in seqs}) > 1  # padding matters
    ours = torch.tensor(score_sequences(rm, seqs, fmt.pad_id))  # the pipeline's scores: at the EOS
    assert saved.padding_side == "right"  # saved so: transformers' pooling and default positions need it
    with torch.no_grad():
        plain = rm(**saved.pad({"input_ids": seqs}, return_tensors="pt")).logits[:, 0]
    assert torch.allclose(plain, ours, atol=1e-5), (plain, ours)


class StubTokenizer:
    """What `PromptFormat.head_pad_id` reads of a tokenizer; every text encodes to `wrap` + one token."""

    def __init__(self, specials: dict[int, str], pad: int, eos: int, unk=None, bos=None, wrap=()):
        from tokenizers import AddedToken

        self.added_tokens_decoder = {i: AddedToken(name, special=True) for i, name in specials.items()}
        self.pad_token_id, self.eos_token_id, self.unk_token_id, self.bos_token_id = pad, eos, unk, bos
        self.wrap = list(wrap)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [*self.wrap, 100]}


def test_head_pad_id_prefers_a_pad_then_reserved_then_unknown_and_never_eos_bos_or_template_tokens():
    from rewdistill.models.prompt import PromptFormat

    def pick(specials, n_embeddings=None, **kw):
        return PromptFormat(StubTokenizer(specials, **kw), False).head_pad_id(n_embeddings)

    names = {0: "<|endoftext|>", 1: "<|unk|>", 2: "<|reserved_3|>", 3: "<pad>", 4: "<|im_start|>", 5: "<s>"}
    same = dict(pad=0, eos=0, unk=1, bos=5, wrap=[4])  # pad = EOS; <|im_start|> wraps every prompt
    assert pick(names, pad=3, eos=0) == 3  # a pad that is not EOS is kept
    assert pick(names, **same) == 3  # named like a pad
    assert pick(names, n_embeddings=3, **same) == 2  # ids past the embedding rows are out: reserved next
    assert pick({k: v for k, v in names.items() if k not in (2, 3)}, **same) == 1  # then the unknown token
    assert pick({0: "<|endoftext|>", 4: "<|im_start|>", 5: "<s>", 7: "<tool>"}, **same) == 7  # then any other
    assert pick({0: "<|endoftext|>", 4: "<|im_start|>", 5: "<s>"}, **same) is None  # never EOS, BOS, template


def test_report_compares_two_runs_side_by_side(micro_run, tmp_path, capsys):
    import shutil

    run_dir, args = micro_run
    other = tmp_path / "kl045"
    shutil.copytree(run_dir, other)
    assert main([a if a != str(run_dir) else str(other) for a in args] + ["--rl.kl_coef", "0.45", "--force"]) == 0
    mine = yaml.safe_load((run_dir / "config.yaml").read_text())["rl"]["kl_coef"]  # an earlier test may change it
    capsys.readouterr()
    assert main(["report", str(run_dir), str(other), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    a, b = (json.loads((d / "results.json").read_text()) for d in (run_dir, other))
    row = next(line for line in md.splitlines() if line.startswith("| Student after RL"))
    assert row.endswith(f"| {100 * a['accuracy']['student_rl']:.1f}% | {100 * b['accuracy']['student_rl']:.1f}% |")
    assert f"| `rl.kl_coef` | `{mine}` | `0.45` |" in md and "| `rl.kl_coef` |" in out
    assert sum(line.startswith("| `") for line in md.splitlines()) == 1  # the one key that differs
    assert main(["report", str(tmp_path)]) == 2  # not a run directory: one clear line
    assert "no results.json" in capsys.readouterr().err


def test_every_saved_model_has_a_model_card_with_hub_metadata(micro_run, tiny_qwen_student):
    from pathlib import Path

    from huggingface_hub import ModelCard

    run_dir, _ = micro_run
    res = json.loads((run_dir / "results.json").read_text())
    for d, tag in [("student_sft", "text-generation"), ("reward_model", "text-classification"),
                   ("student_rl", "text-generation")]:
        card = ModelCard.load(run_dir / d / "README.md")
        meta = card.data.to_dict()
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == tag, d
        assert {"rewdistill", "distillation"} <= set(meta["tags"]), d
        assert "zoo:teacher" in card.text and f"{100 * res['accuracy']['student_rl']:.1f}%" in card.text, d
        assert "base_model" not in meta and "pypi" not in card.text, d  # a local student: not a hub id
        student = Path(tiny_qwen_student)  # an absolute path: named by its base name only (tests/test_cards.py)
        assert f"`{student.name}`" in card.text and str(student.parent) not in card.text, d


class RecordingHub:
    """Stands in for huggingface_hub.HfApi: records the calls (no hub is reachable here)."""

    calls: list = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], {**kw, "files": sorted(
            p.name for p in __import__("pathlib").Path(kw["folder_path"]).iterdir())}))


def test_push_to_hub_uploads_the_final_student_privately(micro_run, tmp_path, monkeypatch, capsys):
    import shutil

    import huggingface_hub

    src, args = micro_run
    run_dir = tmp_path / "pushed"
    shutil.copytree(src, run_dir)
    args = [a if a != str(src) else str(run_dir) for a in args] + ["--force"]
    tokens = []
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: tokens.append(token) or RecordingHub())
    RecordingHub.calls = []
    assert main(args + ["--push_to_hub", "me/tiny-student"]) == 0
    (c1, repo, kw1), (c2, repo2, kw2) = RecordingHub.calls
    assert (c1, repo, kw1["private"], c2, repo2) == ("create_repo", "me/tiny-student", True, "upload_folder",
                                                      "me/tiny-student")
    assert kw2["folder_path"] == str(run_dir / "student_rl") and {"README.md", "model.safetensors"} <= set(kw2["files"])
    assert tokens == ["hf_secret_test_token"]
    out = capsys.readouterr()
    assert "pushed: https://huggingface.co/me/tiny-student" in out.out and "hf_secret" not in out.out + out.err


def test_a_failed_push_is_one_line_and_keeps_the_run(micro_run, tmp_path, monkeypatch, capsys):
    import shutil

    import huggingface_hub

    src, args = micro_run
    run_dir = tmp_path / "pushed"
    shutil.copytree(src, run_dir)

    class Refusing(RecordingHub):
        def create_repo(self, repo_id, **kw):
            raise OSError("401 Client Error: Unauthorized for url\nmore detail")  # what HfHubHTTPError is

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: Refusing())
    assert main([a if a != str(src) else str(run_dir) for a in args] + ["--force", "--push_to_hub", "me/x"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower() and "rewdistill" in line]
    assert len(errors) == 1 and "--push_to_hub me/x: OSError: 401 Client Error" in errors[0]
    assert "Traceback" not in err
    assert (run_dir / "results.json").exists()
