"""FSDP 2 on 2 CPU processes (gloo), launched as a user launches it: `accelerate launch --config_file
configs/accelerate/fsdp.yaml`. Against 1 process with the same global batch: the same SFT and reward-model losses,
the same weights after one RL update; saved models that plain transformers loads and that score as the sharded
models did in-process; a run killed inside RL that resumes to the uninterrupted run's result. Minutes of CPU:
marked slow (`pytest -m slow`, run by .ci/run)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.test_scale import DIST, copy_before, launch, rows

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def pythonpath() -> str:
    return os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # tests/ importable; the caller's first


def accelerate_fsdp(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`accelerate launch` with the shipped FSDP config on 2 CPU processes (no mixed precision on CPU)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath(), **(env or {})}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
           "--main_process_port", str(port), *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def held(stderr: str, name: str) -> list[tuple[int, int]]:
    """(values held, whole) per process from the run's sharding lines for `name`."""
    found = re.findall(rf"{name}: FSDP 2 over 2 processes; process \d holds ([\d,]+) of ([\d,]+) parameter values",
                       stderr)  # two processes may print into one line
    return [(int(a.replace(",", "")), int(b.replace(",", ""))) for a, b in found]


def sharded(out: str, name: str, both: bool = False) -> bool:
    """The main process (`both`: each of the two) reports holding part of `name`'s parameters, about half (with
    both: the parts add up to the whole)."""
    h = held(out, name)
    if not h or (both and (len(h) != 2 or sum(a for a, _ in h) != h[0][1])):
        return False
    return all(0.4 * b < a < 0.6 * b for a, b in h)


LORA = ["--lora.student", "true", "--lora.reward_model", "true", "--lora.r", "4",
        "--lora.dropout", "0"]  # dropout draws its masks per process: no 1-vs-2 comparison with it


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp_sft_and_reward_model_losses_match_one_process(tmp_path, lora):
    extra = LORA if lora else []
    one = tmp_path / "one"
    launch(one, 1, "--until", "reward-model", *extra)
    sft2, rm2 = tmp_path / "sft2", tmp_path / "rm2"
    copy_before(one, sft2, "sft")
    p = accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(sft2), *DIST, "--until", "sft", *extra)
    assert sharded(p.stderr, "sft"), p.stderr[-3000:]
    copy_before(one, rm2, "reward-model")  # the same labelled responses in
    p = accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(rm2), *DIST, "--until", "reward-model",
                        *extra)
    assert sharded(p.stderr, "reward-model"), p.stderr[-3000:]
    for run_dir, name in [(sft2, "sft_metrics.jsonl"), (rm2, "reward_model_metrics.jsonl")]:
        a, b = rows(one, name), rows(run_dir, name)
        assert len(a) == len(b) > 2, name  # one row per optimiser step, written once
        for x, y in zip(a, b):
            assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (name, x["step"], x["loss"], y["loss"])
    # the saved models: plain transformers directories with the weights the one-process run saved (to float noise)
    for run_dir, name, auto in [(sft2, "student_sft", AutoModelForCausalLM), (rm2, "reward_model",
                                                                               AutoModelForCausalLM)]:
        a, b = auto.from_pretrained(one / name).state_dict(), auto.from_pretrained(run_dir / name).state_dict()
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-4, name
    if lora:  # the adapters too, saved whole (merged = base + adapter is tests/test_scale.py's check)
        for name in ["student_sft_lora", "reward_model_lora"]:
            run_dir = sft2 if name.startswith("student") else rm2
            a = load_file(one / name / "adapter_model.safetensors")
            b = load_file(run_dir / name / "adapter_model.safetensors")
            assert a.keys() == b.keys() and len(a) > 0
            assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-4, name
    cfg = json.loads((rm2 / "reward_model" / "config.json").read_text())
    assert cfg["reward_kind"] == "likelihood"
    assert cfg["reward_scale"] == pytest.approx(json.loads((one / "reward_model" / "config.json").read_text())
                                                ["reward_scale"], rel=1e-4)


def plain_likelihood_scores(path: Path, ids, mask, resp) -> torch.Tensor:
    """A saved likelihood reward model scored with plain transformers and the formula its config states:
    reward_scale * mean log-prob of the response tokens + reward_bias. (B,)."""
    lm = AutoModelForCausalLM.from_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)  # (B, L-1, V)
    tok = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1) log-prob of token t+1
    r = resp[:, 1:].float()
    return cfg["reward_scale"] * (tok * r).sum(1) / r.sum(1) + cfg["reward_bias"]


def test_fsdp_one_rl_update_matches_one_process_and_saved_models_score_as_in_process(tmp_path, other_tokenizer):
    """Policy, critic and a likelihood reward model with tied embeddings, each updated once on a fixed batch whose
    halves hold different token counts: 2 FSDP processes give the weights 1 process gives (1e-5); the models saved
    the way the stages save them load with plain transformers and score what the sharded models scored."""
    from tests.conftest import save_tiny
    from tests.dist_update import fixed_rollout

    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    script = str(ROOT / "tests" / "dist_update.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath()}
    subprocess.run([sys.executable, script, path, str(tmp_path / "one.safetensors")], env=env, check=True,
                   capture_output=True, timeout=600)
    p = accelerate_fsdp(script, path, str(tmp_path / "two.safetensors"), str(tmp_path / "saved"))
    for name in ("policy", "critic", "reward model"):
        assert sharded(p.stdout, name, both=True), (name, p.stdout[-2000:])
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert one.keys() == two.keys()
    start = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert sum(not torch.equal(start[k], one[f"policy.{k}"]) for k in start) > 5  # the update did something
    assert sum(not torch.equal(start[k], one[f"rm.lm.{k}"]) for k in start) > 5
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst <= 1e-5, worst
    saved = tmp_path / "saved"
    ref = load_file(saved / "in_process.safetensors")
    ro, _, _ = fixed_rollout(len(other_tokenizer))
    mask = ro.mask.long()
    resp = torch.cat([torch.zeros_like(ro.ids[:, : ro.P]), ro.resp_mask], 1).long()
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(saved / "policy")(input_ids=ro.ids, attention_mask=mask).logits
        critic = AutoModelForSequenceClassification.from_pretrained(saved / "critic")
        values = critic(input_ids=ro.ids[:, : ro.P], attention_mask=mask[:, : ro.P]).logits[:, 0]
    torch.testing.assert_close(logits, ref["policy_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, ref["critic_values"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain_likelihood_scores(saved / "rm", ro.ids, mask, resp), ref["rm_scores"],
                               atol=1e-5, rtol=1e-5)
    # and the saved weights are the whole updated weights, not one process's shard
    policy = AutoModelForCausalLM.from_pretrained(saved / "policy").state_dict()
    assert all(torch.equal(policy[k], two[f"policy.{k}"]) for k in policy)


def test_fsdp_run_killed_in_rl_resumes_to_the_uninterrupted_result(tmp_path):
    base = tmp_path / "base"
    accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(base), *DIST, "--until", "reward-model")
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    copy_before(base, killed, "rl")
    copy_before(base, whole, "rl")
    ckpt = ["--reliability.checkpoint_every", "1"]
    p = accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(killed), *DIST, *ckpt,
                        env={"REWDISTILL_KILL_AT": "rl-step#2"}, check=False)
    assert p.returncode != 0
    assert json.loads((killed / "checkpoints" / "rl" / "latest.json").read_text())["step"] == 2
    p = accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(killed), *DIST, *ckpt)
    assert sharded(p.stderr, "rl policy"), p.stderr[-3000:]
    accelerate_fsdp("-m", "rewdistill.cli", "run", "--run-dir", str(whole), *DIST, *ckpt)
    same = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "elapsed")} for r in rs]  # noqa: E731
    a, b = rows(killed, "rl_metrics.jsonl"), rows(whole, "rl_metrics.jsonl")
    steps = [r for r in a if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    # rollouts come from the updated policy (the whole copy refreshed from the shards), not the reference
    assert steps[0]["kl"] < 1e-4 and all(r["kl"] > 1e-2 for r in steps[1:]), [r["kl"] for r in steps]
    assert same(a) == same(b)  # every step's reward, KL, losses: as if never killed
    ra = load_file(killed / "student_rl" / "model.safetensors")
    rb = load_file(whole / "student_rl" / "model.safetensors")
    sft = load_file(whole / "student_sft" / "model.safetensors")
    assert any(not torch.equal(rb[k], sft[k]) for k in sft)  # rl moved the student
    assert max((ra[k] - rb[k]).abs().max().item() for k in rb) <= 1e-6
    assert json.loads((killed / "results.json").read_text())["accuracy"] == \
        json.loads((whole / "results.json").read_text())["accuracy"]
