"""The non-finite guard (sft, reward model, rl) and safe loading / secrets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from rewdistill.config import Config, RLCfg
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model, load_tokenizer
from rewdistill.train.checkpoint import Checkpoint, peek
from rewdistill.train.guard import NonFiniteError, all_finite
from rewdistill.train.reward_model import train_reward_model
from rewdistill.train.rl_loop import train_rl
from rewdistill.train.sft import train_sft
from tests.conftest import save_tiny

SRC = Path(__file__).resolve().parent.parent / "src" / "rewdistill"


class Flaky(torch.nn.Module):
    """Wraps a model; the forward calls numbered in `bad` (1-based; 'all' for every call) return a NaN loss."""

    def __init__(self, inner, bad):
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, **kw):
        out = self.inner(**kw)
        self.calls += 1
        if self.bad == "all" or self.calls in self.bad:
            out.loss = out.loss * float("nan")
        return out


def pairs(tok, n=8):
    return [(tok(f"Question: {i} + 1?\nAnswer:")["input_ids"], tok(f" {i + 1}")["input_ids"] + [tok.eos_token_id])
            for i in range(n)]


def test_all_finite():
    assert all_finite(torch.ones(3), 1.0) and not all_finite(torch.tensor([1.0, float("nan")]))
    assert not all_finite(float("inf"))


def test_sft_skips_a_nan_step_and_counts_it(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    tok, model = load_tokenizer(path), load_causal_lm(path)
    logged = []
    flaky = Flaky(model, {2})
    train_sft(flaky, pairs(tok), tok.pad_token_id, epochs=1, lr=1e-3, batch_size=2, warmup_frac=0, weight_decay=0,
              accelerator=Accelerator(cpu=True), seed=0, log=logged.append, max_skips=3)
    assert [r["skipped"] for r in logged] == [0, 1, 0, 0] and logged[-1]["skipped_total"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_sft_stops_after_consecutive_nan_steps_keeping_the_last_checkpoint(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    tok, model = load_tokenizer(path), load_causal_lm(path)
    acc = Accelerator(cpu=True)
    ckpt = Checkpoint(tmp_path / "ck", 1, acc, "tag")
    flaky = Flaky(model, set(range(3, 100)))  # steps 1-2 fine, then NaN for ever
    with pytest.raises(NonFiniteError, match=r"sft: 3 consecutive steps .* non-finite .*Lower sft.lr"):
        train_sft(flaky, pairs(tok, 16), tok.pad_token_id, epochs=1, lr=1e-3, batch_size=2, warmup_frac=0,
                  weight_decay=0, accelerator=acc, seed=0, log=lambda r: None, ckpt=ckpt, max_skips=3)
    # only good steps are checkpointed: the last one (step 2) is intact, finite and loadable
    assert peek(tmp_path / "ck", "tag") == 2
    fresh = load_causal_lm(path)
    ckpt.load({"model": Flaky(fresh, set())}, {})
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_reward_model_stops_on_nan_losses(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    tok, rm = load_tokenizer(path), load_reward_model(path)
    with torch.no_grad():
        rm.score.weight.fill_(float("nan"))
    rows = [{"qid": str(i // 2), "pair": (p, r), "label": i % 2} for i, (p, r) in enumerate(pairs(tok))]
    with pytest.raises(NonFiniteError, match="reward-model: 2 consecutive"):
        train_reward_model(rm, rows, tok.pad_token_id, loss="bce", epochs=1, lr=1e-3, batch_size=2,
                           accelerator=Accelerator(cpu=True), seed=0, log=lambda r: None, max_skips=2)


def test_rl_skips_nan_rewards_then_stops(tmp_path, other_tokenizer):
    path = save_tiny("qwen2", other_tokenizer, tmp_path / "m")
    tok = load_prompt_format(path)
    policy, ref = load_causal_lm(path), load_causal_lm(path)
    cfg = RLCfg(algo="grpo", steps=4, rollout_batch=2, group_size=2, minibatch=2, max_new_tokens=6,
                unfinished_penalty=None)
    calls = []

    def reward(ro):
        calls.append(1)
        r = torch.ones(len(ro.texts)) * 0.1 * len(calls) + torch.arange(len(ro.texts)) * 0.01
        return r * float("nan") if len(calls) == 2 else r

    logged = []
    p0 = [p.detach().clone() for p in policy.parameters()]
    train_rl(policy, ref, None, tok, ["Question: a\nAnswer:", "Question: bb\nAnswer:"], cfg, reward_fn=reward,
             accelerator=Accelerator(cpu=True), seed=0, log=logged.append, max_skips=2)
    assert [r["skipped"] for r in logged] == [0, 1, 0, 0]
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    assert any((a - b).abs().max() > 0 for a, b in zip(p0, policy.parameters()))
    with pytest.raises(NonFiniteError, match="rl: 2 consecutive"):
        train_rl(policy, ref, None, tok, ["Question: a\nAnswer:"], cfg, reward_fn=lambda ro: torch.full(
            (len(ro.texts),), float("nan")), accelerator=Accelerator(cpu=True), seed=0, log=lambda r: None, max_skips=2)


def test_loading_is_safe_by_default():
    assert Config().models.trust_remote_code is False
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    loads = re.findall(r"torch\.load\(([^)]*)\)", code)
    assert loads and all("weights_only=True" in call for call in loads), loads  # never unpickle arbitrary objects
    assert "pickle" not in code and "trust_remote_code=True" not in code


def test_run_artifacts_are_safetensors_only(tmp_path):
    from rewdistill.cli import main
    from tests.conftest import MICRO

    assert main(["run", "--run-dir", str(tmp_path), *MICRO, "--reliability.checkpoint_every", "1",
                 "--until", "reward-model"]) == 0
    weights = [p for p in tmp_path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".safetensors")]
    assert weights and all(p.suffix == ".safetensors" for p in weights), weights
    assert not (tmp_path / "checkpoints").exists()  # training state is dropped once a stage is done


def test_an_early_stop_survives_a_kill_and_resume(tmp_path, other_tokenizer):
    """rl.early_stop: the step that stopped is checkpointed as a stop, so a run killed after it and resumed trains no
    further steps (the resumed process does not re-run the selection checks that asked for the stop)."""
    path = save_tiny("qwen2", other_tokenizer, tmp_path / "m")
    tok = load_prompt_format(path)
    cfg = RLCfg(algo="grpo", steps=5, rollout_batch=2, group_size=2, minibatch=2, max_new_tokens=6,
                unfinished_penalty=None)
    prompts = ["Question: a\nAnswer:", "Question: bb\nAnswer:"]

    def reward(ro):
        return torch.arange(len(ro.texts), dtype=torch.float32)

    def train(stop_at, rows):
        policy, ref = load_causal_lm(path), load_causal_lm(path)
        acc = Accelerator(cpu=True)
        train_rl(policy, ref, None, tok, prompts, cfg, reward_fn=reward, accelerator=acc, seed=0, log=rows.append,
                 on_step=lambda step, ro, pol, score: step == stop_at, ckpt=Checkpoint(tmp_path / "ck", 3, acc, "t"))
        return policy

    first: list[dict] = []
    stopped = train(2, first)  # stops at step 2 (not a checkpoint_every step): checkpointed there as a stop
    assert [r["step"] for r in first] == [1, 2] and peek(tmp_path / "ck", "t") == 2
    resumed_rows: list[dict] = []
    resumed = train(None, resumed_rows)  # the rerun after a kill: nobody asks it to stop again
    assert resumed_rows == []  # no step trained after the stop
    for a, b in zip(stopped.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
