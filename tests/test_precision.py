"""`auto` precision (bf16 only where the hardware has fast bf16 matrix products) and fp32 attention under CPU
autocast (models/precision.py)."""
import pytest
import torch
import torch.nn.functional as F

from rewdistill.models import load, precision


@pytest.mark.parametrize("amx", [True, False])
def test_auto_is_bf16_only_on_cuda_or_a_cpu_with_amx(monkeypatch, amx):
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(load, "cpu_has_amx", lambda: amx)
    assert precision.resolve("auto", "cpu") == ("bf16" if amx else "no")
    assert precision.resolve("auto", "cuda") == "no"  # the GPU configs ask for bf16 themselves
    assert precision.resolve("no", "cpu") == "no" and precision.resolve("bf16", "cpu") == "bf16"
    assert load.pick_dtype("auto", "cpu") == (torch.bfloat16 if amx else torch.float32)
    assert load.pick_dtype("auto", "cuda:0") == torch.bfloat16
    assert load.pick_dtype("float32", "cpu") == torch.float32


def qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 7, 16, generator=g) for _ in range(3)]  # (B, H, T, D) each


def test_sdpa_runs_in_fp32_under_cpu_autocast_and_is_the_plain_call_outside():
    q, k, v = qkv()
    mask = torch.ones(7, 7, dtype=torch.bool).tril()
    assert torch.equal(precision.sdpa(q, k, v, attn_mask=mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))  # what bf16 projections hand the attention under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = precision.sdpa(qb, kb, vb, attn_mask=mask)
        lowered = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)  # autocast's own choice: bf16
    want = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float(), attn_mask=mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, want.bfloat16())
    assert not torch.equal(lowered, want.bfloat16())  # the test would notice attention left in bf16


def test_transformers_sdpa_wrapped_once_and_fp32_only_under_cpu_autocast(monkeypatch):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    calls = []

    def fake(module, q, k, v, mask, **kw):  # records the dtype the attention computes in
        calls.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return q, None

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "sdpa", fake)
    precision.keep_cpu_attention_fp32()
    wrapped = ALL_ATTENTION_FUNCTIONS["sdpa"]
    precision.keep_cpu_attention_fp32()
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is wrapped  # not wrapped twice
    q, k, v = qkv()
    wrapped(None, q, k, v, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = wrapped(None, q.bfloat16(), k.bfloat16(), v.bfloat16(), None)
    assert calls == [(torch.float32, False), (torch.float32, False)]
    assert out.dtype == torch.bfloat16


def test_an_sft_step_under_cpu_bf16_autocast_keeps_fp32_weights_and_learns():
    """The suffix loss under bf16 autocast (the `auto` path on an AMX CPU): fp32 weights and gradients, a loss
    within bf16 rounding of the fp32 one, and an optimiser step that lowers it."""
    from rewdistill.models.load import load_causal_lm
    from rewdistill.train.sft import suffix_loss

    precision.keep_cpu_attention_fp32()
    torch.manual_seed(0)
    model = load_causal_lm("zoo:student", "cpu", "float32").train()  # layer 0 through transformers, 1 ours
    pairs = [([5, 6, 7, 8], [9, 10, 11]), ([5, 7], [12, 13, 14, 15])] * 4
    fp32 = suffix_loss(model, pairs, 0, "cpu").item()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = suffix_loss(model, pairs, 0, "cpu")
    assert abs(loss.item() - fp32) < 0.05 * abs(fp32)
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters()
               if p.grad is not None)
    opt.step()
    assert suffix_loss(model, pairs, 0, "cpu").item() < fp32


def test_auto_precision_run_keeps_rl_exact_on_cpu(tmp_path, monkeypatch):
    """A micro run with `auto` precision as on a CPU with AMX (forced here, so that any CPU runs the bf16 path):
    bf16 sampling, SFT and reward-model training under bf16 autocast; RL's reference stays at the policy's fp32, so
    the KL to it at the first step, before any update, is 0."""
    from rewdistill.cli import main
    from rewdistill.io import read_jsonl
    from tests.conftest import MICRO

    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(load, "cpu_has_amx", lambda: True)
    resolved, real = [], precision.resolve
    monkeypatch.setattr(precision, "resolve", lambda *a: resolved.append(real(*a)) or resolved[-1])
    assert main(["run", "--run-dir", str(tmp_path / "r"), *MICRO, "--until", "rl"]) == 0
    assert resolved[-3:] == ["bf16", "bf16", "no"]  # the accelerators of sft, reward-model, rl
    steps = [r for r in read_jsonl(tmp_path / "r" / "rl_metrics.jsonl") if "kl" in r]
    assert steps and steps[0]["kl"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("amx", [True, False])
def test_stage_hashes_hold_the_resolved_precision(monkeypatch, amx):
    """`auto` is hashed as it resolves: where it means `no`, runs made before `auto` (mixed_precision no) resume;
    where it means bf16, an fp32 run is not continued in bf16. Several processes: no (not verified in bf16)."""
    from rewdistill.config import Config
    from rewdistill.stage_list import stage_hashes

    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    auto = stage_hashes(Config.model_validate({"models": {"device": "cpu"}}))
    old = stage_hashes(Config.model_validate({"models": {"device": "cpu"}, "sft": {"mixed_precision": "no"},
                                              "reward_model": {"mixed_precision": "no"}}))
    assert (auto["sft"] == old["sft"]) is (not amx) and (auto["reward-model"] == old["reward-model"]) is (not amx)
    assert auto["teacher-sample"] == old["teacher-sample"]
    assert precision.resolve("auto", "cpu", 2) == "no"
