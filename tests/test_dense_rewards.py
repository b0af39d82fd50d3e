"""Dense rewards from the teacher (issue 16): on-policy distillation, its gated hybrid, and teacher log-probs from
every backend, checked against hand computations with full forwards."""
from __future__ import annotations

import shutil

import pytest
import torch

from rewdistill.algo.dense import vote_gate
from rewdistill.cli import main
from rewdistill.config import OpenAICfg, RLCfg
from rewdistill.io import read_json, read_jsonl
from rewdistill.models.load import load_causal_lm, load_prompt_format
from rewdistill.sampling.backends import HFSampler
from rewdistill.sampling.openai_api import OpenAISampler
from rewdistill.train import grpo, ppo, rloo
from rewdistill.train.rewards import (
    local_teacher_logprobs,
    make_teacher_kl_reward,
    remote_teacher_logprobs,
    rollout_token_lists,
)
from rewdistill.train.rollout import Rollout, Scores, build_batch
from tests.conftest import MICRO
from tests.openai_server import TinyOpenAIServer

PROMPTS = ["Question: Tom has 3 apples and gets 4 more. How many now?\nAnswer:", "Question: 5 + 6?\nAnswer:"]
RESPONSES = [" 3 + 4 = 7\n#### 7", " #### 11 and more words"]


def full_forward_logprobs(model, ids: list[int], start: int) -> list[float]:
    """log p(ids[t] | ids[:t]) for t >= start, from one unpadded forward: the reference the tests compare to."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [logp[t - 1, ids[t]].item() for t in range(start, len(ids))]


def real_rollout(student, fmt, idx: list[int]) -> Rollout:
    """A rollout of fixed responses with the student's own log-probs, laid out as `sample_rollout` lays it out."""
    pairs = [fmt.pair_ids(PROMPTS[i], RESPONSES[i]) for i in idx]
    ids, mask, resp_mask, P = build_batch([p for p, _ in pairs], [r for _, r in pairs], fmt.pad_id)
    logp = torch.zeros(resp_mask.shape)
    for b, (p, r) in enumerate(pairs):
        logp[b, : len(r)] = torch.tensor(full_forward_logprobs(student, p + r, len(p)))
    B = len(idx)
    return Rollout(idx, [RESPONSES[i] for i in idx], ids, mask, resp_mask, P, torch.ones(B, dtype=torch.bool),
                   logp, logp.clone())


@pytest.fixture(scope="module")
def models():
    teacher, student = load_causal_lm("zoo:teacher").eval(), load_causal_lm("zoo:student").eval()
    fmt = load_prompt_format("zoo:student")
    assert fmt.same_tokens(load_prompt_format("zoo:teacher"))
    return teacher, student, fmt


def test_teacher_kl_equals_a_hand_computation(models):
    teacher, student, fmt = models
    ro = real_rollout(student, fmt, [0, 1, 1])
    out = make_teacher_kl_reward(local_teacher_logprobs(teacher, batch_size=2))(ro)
    assert isinstance(out, Scores) and out.terminal.tolist() == [0.0, 0.0, 0.0]
    for b, i in enumerate([0, 1, 1]):
        p, r = fmt.pair_ids(PROMPTS[i], RESPONSES[i])
        want = [t - s for t, s in zip(full_forward_logprobs(teacher, p + r, len(p)),
                                      full_forward_logprobs(student, p + r, len(p)))]
        assert out.dense[b, : len(r)].tolist() == pytest.approx(want, abs=1e-4)
        assert out.dense[b, len(r):].abs().sum().item() == 0.0  # nothing on padding
    assert out.teacher_tokens == int(ro.mask.sum())


def test_gated_hybrid_weights_follow_the_vote_shares():
    ro = Rollout([0, 1, 2], ["a", "b", "c"], torch.zeros(3, 4, dtype=torch.long), torch.ones(3, 4), torch.ones(3, 2),
                 2, torch.ones(3, dtype=torch.bool), torch.full((3, 2), -2.0), torch.full((3, 2), -2.0))
    teacher_lp = lambda r: (torch.full((3, 2), -1.0), 12)  # noqa: E731  dense = -1 - (-2) = +1 per token
    rm = lambda r: torch.tensor([4.0, 4.0, 4.0])  # noqa: E731
    fixed = make_teacher_kl_reward(teacher_lp, rm, coef=0.5)(ro)
    assert fixed.terminal.tolist() == [4.0, 4.0, 4.0] and fixed.dense.tolist() == [[0.5, 0.5]] * 3
    gated = make_teacher_kl_reward(teacher_lp, rm, coef=0.5, gate_shares=[0.25, 0.75, 1.0], gate_lo=0.5,
                                   gate_hi=1.0)(ro)
    assert gated.terminal.tolist() == [4.0, 2.0, 0.0]  # split votes: the reward model; unanimous: the teacher
    assert gated.dense.tolist() == [[0.0, 0.0], [0.25, 0.25], [0.5, 0.5]]
    assert vote_gate(torch.tensor([0.4, 0.6]), 0.5, 0.5).tolist() == [0.0, 1.0]


def test_dense_rewards_reach_every_algorithm():
    B, T = 4, 3
    ro = Rollout([0, 0, 1, 1], ["a"] * 4, torch.zeros(B, 2 + T, dtype=torch.long), torch.ones(B, 2 + T),
                 torch.ones(B, T), 2, torch.ones(B, dtype=torch.bool), torch.zeros(B, T), torch.zeros(B, T))
    cfg = RLCfg(algo="grpo", group_size=2)
    score, kl = torch.zeros(B), torch.zeros(B, T)
    dense = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 2.0]])
    for algo in (grpo, rloo):  # summed into the response's score: the denser response of each pair is ahead
        adv = algo.advantages(ro, score, kl, 0.0, cfg, None, dense).advantages[:, 0]
        assert adv[0] > 0 > adv[1] and adv[3] > 0 > adv[2]
        assert algo.advantages(ro, score, kl, 0.0, cfg, None).advantages.abs().sum() == 0  # no dense: no signal

    class ZeroCritic(torch.nn.Module):  # values 0 everywhere: GAE with gamma = lam = 1 returns reward-to-go
        def __init__(self):
            super().__init__()
            self.score = torch.nn.Identity()

        def forward(self, input_ids, attention_mask, position_ids, output_hidden_states):
            return type("O", (), {"hidden_states": [torch.zeros(*input_ids.shape, 1)]})()

    pcfg = RLCfg(gamma=1.0, lam=1.0)
    a = ppo.advantages(ro, score, kl, 0.0, pcfg, ZeroCritic(), dense)
    assert a.returns.tolist() == [[1.0, 0, 0], [0, 0, 0], [0, 0, 0], [2.0, 2.0, 2.0]]  # per-token credit


def test_server_and_local_teacher_logprobs_agree(models, tmp_path):
    teacher, student, fmt = models
    ro = real_rollout(student, fmt, [0, 1])
    prompts, responses = rollout_token_lists(ro)
    local, _ = local_teacher_logprobs(teacher)(ro)
    hf = HFSampler(teacher, fmt, batch_size=8).token_logprobs(prompts, responses)
    server = TinyOpenAIServer("zoo:teacher")
    try:
        api = OpenAISampler(OpenAICfg(base_url=server.url, endpoint="completions", timeout_s=30), "tiny", None)
        remote, n_tok = remote_teacher_logprobs(api)(ro)
    finally:
        server.close()
    for b, r in enumerate(responses):
        assert remote[b, : len(r)].tolist() == pytest.approx(local[b, : len(r)].tolist(), abs=1e-4)
        assert hf[b] == pytest.approx(local[b, : len(r)].tolist(), abs=1e-4)
    assert n_tok == sum(len(p) + len(r) for p, r in zip(prompts, responses))


@pytest.fixture(scope="module")
def same_tokenizer_run(tmp_path_factory):
    """A micro run up to the reward model whose student shares the teacher's tokenizer (the zoo's)."""
    d = tmp_path_factory.mktemp("dense_base")
    assert main(["run", "--run-dir", str(d), *MICRO, "--until", "reward-model"]) == 0
    return d


@pytest.mark.parametrize("extra", [["--rl.reward", "teacher-kl"],
                                   ["--rl.reward", "rm+teacher-kl", "--rl.teacher_kl_gate", "vote-share"],
                                   ["--rl.reward", "teacher-kl", "--rl.algo", "grpo", "--rl.group_size", "2"]])
def test_teacher_kl_in_the_rl_stage(same_tokenizer_run, tmp_path, extra):
    d = tmp_path / "run"
    shutil.copytree(same_tokenizer_run, d)
    assert main(["run", "--run-dir", str(d), "--force", *MICRO, *extra, "--rl.watch_every", "0",
                 "--until", "rl"]) == 0
    steps = [r for r in read_jsonl(d / "rl_metrics.jsonl") if "dense_reward" in r]
    assert len(steps) == 2 and all(r["teacher_tokens"] > 0 and r["dense_reward"] == r["dense_reward"] for r in steps)
    # rollout_tokens is cumulative: each step adds its responses' tokens (mean length x rollout_batch x group_size)
    responses = 4 * (2 if "--rl.group_size" in extra else 1)  # MICRO's rl.rollout_batch 4
    added = [round(r["response_length"] * responses) for r in steps]
    assert all(n > 0 for n in added)
    assert [r["rollout_tokens"] for r in steps] == [added[0], added[0] + added[1]], (steps, added)


def test_token_budget_stops_rl_early(same_tokenizer_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(same_tokenizer_run, d)
    assert main(["run", "--run-dir", str(d), "--force", *MICRO, "--rl.steps", "50", "--rl.token_budget", "1",
                 "--rl.watch_every", "0", "--until", "rl"]) == 0
    assert len([r for r in read_jsonl(d / "rl_metrics.jsonl") if "reward" in r]) == 1


def test_a_teacher_with_another_tokenizer_is_refused_before_any_stage_runs(tmp_path, tiny_qwen_student, capsys):
    d = tmp_path / "run"
    code = main(["run", "--run-dir", str(d), *MICRO, "--models.student", tiny_qwen_student, "--rl.reward",
                 "teacher-kl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "different tokenizers" in err[0] and "teacher-judge" in err[0]
    assert not (d / "teacher_samples.jsonl").exists()


def test_ablate_compares_dense_variants_at_an_equal_rollout_budget(tmp_path):
    out = tmp_path / "ab"
    assert main(["ablate", "--run-dir", str(out), "--seeds", "0", "--variants", "sft_only", "rm", "teacher_kl",
                 "rm_teacher_kl", "--budget", "300", *MICRO, "--rl.watch_every", "0"]) == 0
    s = read_json(out / "ablation.json")
    assert set(s["variants"]) == {"sft_only", "rm", "teacher_kl", "rm_teacher_kl"}
    for v in ("rm", "teacher_kl", "rm_teacher_kl"):
        run = out / "seed0" / v
        rows = [r for r in read_jsonl(run / "rl_metrics.jsonl") if "reward" in r]
        assert rows[-1]["rollout_tokens"] >= 300 > rows[-2]["rollout_tokens"]  # stopped by the budget, not steps
        assert s["rl_cost"][v]["rollout_tokens"] == rows[-1]["rollout_tokens"]
        assert (s["rl_cost"][v]["teacher_tokens"] > 0) == (v != "rm")  # only the dense sources ask the teacher
        assert read_json(run / "results.json")["rl"]["reward"] == {"rm": "rm", "teacher_kl": "teacher-kl",
                                                                   "rm_teacher_kl": "rm+teacher-kl"}[v]
    assert "Teacher-scored tokens" in (out / "ablation.md").read_text()


def test_teacher_kl_over_a_chat_endpoint_is_refused_before_any_stage(tmp_path, capsys):
    d = tmp_path / "run"
    code = main(["run", "--run-dir", str(d), *MICRO, "--models.teacher_backend", "openai", "--openai.base_url",
                 "http://127.0.0.1:9/v1", "--rl.reward", "teacher-kl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "openai.endpoint completions" in err[0]
    assert not (d / "teacher_samples.jsonl").exists()
