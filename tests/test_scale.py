"""Scaling out: sharded sampling, multi-process training (2 CPU processes, gloo), LoRA."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rewdistill.cli import main
from tests.conftest import FP32, MICRO

ROOT = Path(__file__).resolve().parents[1]

SHARDED = [*MICRO, "--teacher_sample.batch_size", "4"]  # 12 questions, 2 per chunk: 6 chunks


def test_three_shards_merged_equal_one_unsharded_run(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(["run", "--run-dir", str(whole), *SHARDED, "--until", "teacher-sample"]) == 0
    run_dir = tmp_path / "sharded"
    for i in range(3):
        assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", f"{i}/3"]) == 0
        assert (run_dir / f"teacher_samples.shard-{i}-of-3.jsonl").exists()
    assert not (run_dir / "teacher_samples.jsonl").exists()  # nothing merged yet
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards", "--until", "teacher-sample"]) == 0
    assert (run_dir / "teacher_samples.jsonl").read_text() == (whole / "teacher_samples.jsonl").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert manifest["teacher-sample"]["done"]


def test_merge_refuses_missing_or_doubled_chunks(tmp_path, capsys):
    run_dir = tmp_path / "r"
    for i in (0, 2):
        assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", f"{i}/3"]) == 0
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards"]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 question chunks missing, from shards 1/3" in err
    shard0 = (run_dir / "teacher_samples.shard-0-of-3.jsonl").read_text()
    (run_dir / "teacher_samples.shard-1-of-3.jsonl").write_text(shard0)  # a wrong copy: chunks 0 and 3 twice
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--merge-shards"]) == 1
    assert "question chunk 0 is in both" in capsys.readouterr().err
    assert main(["run", "--run-dir", str(run_dir), *SHARDED, "--shard", "3/3"]) == 2


# -- multi-process training: 2 CPU processes (torchrun, gloo) against 1 process with the same global batch ---------
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

DIST = [*MICRO, *FP32, "--sft.epochs", "2", "--reward_model.epochs", "2", "--rl.steps", "3", "--rl.rollout_batch", "4",
        "--rl.minibatch", "2"]  # global batches: sft 4, reward model 4, rl 4 prompts (2 per process with 2)


def launch(run_dir, n: int, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if n == 1:
        cmd = [sys.executable, "-m", "rewdistill.cli"]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port", str(port),
               "-m", "rewdistill.cli"]
    p = subprocess.run([*cmd, "run", "--run-dir", str(run_dir), *DIST, *extra], env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def copy_before(src, dst, stage: str):
    """A copy of run `src` whose manifest keeps only the stages before `stage` (so `stage` runs next)."""
    from rewdistill.stage_list import STAGE_NAMES

    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["stages"] = {k: v for k, v in m["stages"].items() if STAGE_NAMES.index(k) < STAGE_NAMES.index(stage)}
    (dst / "manifest.json").write_text(json.dumps(m))


def rows(run_dir, name):
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one = tmp_path / "one"
    launch(one, 1)
    sft2, rest2 = tmp_path / "sft2", tmp_path / "rest2"
    copy_before(one, sft2, "sft")  # same teacher data in, sft on 2 processes
    launch(sft2, 2, "--until", "sft")
    copy_before(one, rest2, "reward-model")  # same labelled responses in, reward model and rl on 2 processes
    launch(rest2, 2, "--until", "rl")
    # tolerance per step, relative, 1e-5 for both: sft divides each process's token sum by the global token count
    # (so tokens weigh the same however they fall between processes), the reward model's per-sequence BCE over
    # equal halves is the same mean; what remains is float summation order
    for run_dir, name, tol in [(sft2, "sft_metrics.jsonl", 1e-5), (rest2, "reward_model_metrics.jsonl", 1e-5)]:
        a, b = rows(one, name), rows(run_dir, name)
        assert len(a) == len(b) and len(a) > 2, name  # one row per optimiser step: written once, not per process
        for x, y in zip(a, b):
            assert abs(x["loss"] - y["loss"]) <= tol * abs(x["loss"]), (name, x["step"], x["loss"], y["loss"])
    # rl: each process samples its own prompts with its own seed, so rollouts (and rewards) differ from one
    # process's; the checks are the step count, finiteness, and the first step's KL (policy = reference)
    a, b = rows(one, "rl_metrics.jsonl"), rows(rest2, "rl_metrics.jsonl")
    steps_a = [r for r in a if "reward" in r]
    steps_b = [r for r in b if "reward" in r]
    assert [r["step"] for r in steps_a] == [r["step"] for r in steps_b] == [1, 2, 3]
    assert steps_b[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert all(math.isfinite(r[k]) for r in steps_b for k in ("reward", "kl", "pg_loss", "value_loss"))
    # one copy of each artifact, nothing left over from the other process
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert [n for n in names(rest2) if "tmp" in n or "shard" in n] == []
    assert {"student_rl/model.safetensors", "reward_model/model.safetensors"} <= set(names(rest2))


def test_lora_student_and_reward_model_merge_and_reload_with_plain_transformers(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rewdistill.models.load import resolve

    run_dir = tmp_path / "r"
    assert main(["run", "--run-dir", str(run_dir), *MICRO, "--lora.student", "true", "--lora.reward_model", "true",
                 "--lora.r", "4", "--lora.target_modules", "[q_proj, v_proj]", "--until", "rl"]) == 0
    for name in ["student_sft_lora", "reward_model_lora", "student_rl_lora"]:
        assert (run_dir / name / "adapter_model.safetensors").exists(), name
        assert json.loads((run_dir / name / "adapter_config.json").read_text())["r"] == 4
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    base = AutoModelForCausalLM.from_pretrained(resolve("zoo:student"))
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "student_sft")  # plain transformers, no peft
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve("zoo:student")),
                                             run_dir / "student_sft_lora")
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, merged(ids).logits)  # training changed something
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-5)  # merge == base + adapter
    sd = AutoModelForCausalLM.from_pretrained(run_dir / "student_sft").state_dict()
    assert not any("lora" in k for k in sd)
    rm = AutoModelForSequenceClassification.from_pretrained(run_dir / "reward_model")
    with torch.no_grad():
        assert torch.isfinite(rm(ids).logits).all()
    rl_sd = AutoModelForCausalLM.from_pretrained(run_dir / "student_rl").state_dict()
    assert any(not torch.equal(rl_sd[k], sd[k]) for k in sd)  # rl moved the merged SFT weights (through LoRA)


def torchrun(n: int, *args: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
                        str(port), *args], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_one_update_on_a_fixed_rollout_is_the_same_on_one_and_two_processes(tmp_path, other_tokenizer):
    """Policy (clipped surrogate + k3 KL) and critic updates on one fixed rollout whose halves hold different token
    counts: 2 processes (DDP, gloo) must give the weights 1 process gives, to 1e-5."""
    from safetensors.torch import load_file

    from tests.conftest import save_tiny

    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    script = str(ROOT / "tests" / "dist_update.py")
    torchrun(1, script, path, str(tmp_path / "one.safetensors"))
    torchrun(2, script, path, str(tmp_path / "two.safetensors"))
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    start = {f"policy.{k}": v for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}
    assert one.keys() == two.keys()
    moved = [k for k in start if not torch.equal(start[k], one[k])]
    assert len(moved) > 5  # the update did something
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst <= 1e-5, worst


def test_a_two_process_run_killed_in_rl_resumes_on_one_process(tmp_path):
    """The checkpoint holds full weights and optimiser state, so the process count may change between a crash
    and the rerun (DDP; see README for FSDP / DeepSpeed)."""
    run_dir = tmp_path / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REWDISTILL_KILL_AT": "rl-step#2"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(port), "-m", "rewdistill.cli", "run", "--run-dir", str(run_dir), *DIST,
                        "--reliability.checkpoint_every", "1"], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode != 0, p.stderr[-3000:]
    assert json.loads((run_dir / "checkpoints" / "rl" / "latest.json").read_text())["step"] == 2
    before = [r for r in rows(run_dir, "rl_metrics.jsonl") if r["step"] <= 2]
    launch(run_dir, 1, "--reliability.checkpoint_every", "1")
    steps = [r["step"] for r in rows(run_dir, "rl_metrics.jsonl") if "reward" in r]
    assert steps == [1, 2, 3]  # steps 1-2 from the 2-process run, step 3 on one process
    assert [r for r in rows(run_dir, "rl_metrics.jsonl") if r["step"] <= 2] == before  # kept as they were
    # the resumed run finished: every stage done, RL moved the student, and the accuracy reported for it is what its
    # evaluated responses give against gold
    from rewdistill.tasks import get_task

    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert len(stages) == 7 and all(s["done"] for s in stages.values())
    sft = AutoModelForCausalLM.from_pretrained(run_dir / "student_sft").state_dict()
    rl = AutoModelForCausalLM.from_pretrained(run_dir / "student_rl").state_dict()
    assert any(not torch.equal(rl[k], sft[k]) for k in sft)
    task = get_task("tiny-arith")
    test = {e.qid: e for e in task.load("test")}
    res = json.loads((run_dir / "results.json").read_text())
    scored = [s for s in rows(run_dir, "eval_samples.jsonl") if s["model"] == "student_rl"]
    assert len(scored) == res["n_test"] == 6
    assert res["accuracy"]["student_rl"] == sum(task.is_correct(s["text"], test[s["qid"]]) for s in scored) / 6


def test_two_process_grpo_with_question_batching_runs_whole_groups(tmp_path):
    """The default RL batching (whole groups, packed by prompt) under DDP: each process takes its own prompts' groups,
    a minibatch of one group per process; the run finishes with finite stats and KL 0 at the first step."""
    one = tmp_path / "one"
    launch(one, 1, "--until", "reward-model")
    two = tmp_path / "two"
    copy_before(one, two, "rl")
    grpo = ["--rl.algo", "grpo", "--rl.reward", "rm-vote", "--rl.group_size", "2", "--rl.batching", "question",
            "--rl.minibatch", "4",  # 4 prompts x 2 per step over 2 processes: 2 groups each, minibatch 2 = 1 group
            "--rl.unfinished_penalty", "null"]  # the micro student rarely finishes: keep its rewards apart
    launch(two, 2, "--until", "rl", *grpo)
    steps = [r for r in rows(two, "rl_metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert all(math.isfinite(r[k]) for r in steps for k in ("reward", "kl", "pg_loss"))
    sft, rl = (AutoModelForCausalLM.from_pretrained(two / d).state_dict() for d in ("student_sft", "student_rl"))
    assert any(not torch.equal(sft[k], rl[k]) for k in sft)  # the synchronised updates moved the student
