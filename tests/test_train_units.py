"""Training pieces on tiny random models: batching, reward-model pairs, losses finite, parameters move."""
from __future__ import annotations

import random

import torch
from accelerate import Accelerator

from rewdistill.config import RLCfg
from rewdistill.models.forward import token_logprobs
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model
from rewdistill.train.common import sft_batch
from rewdistill.train.reward_model import make_pairs, train_reward_model
from rewdistill.train.rewards import make_rm_reward
from rewdistill.train.rl_loop import train_rl
from rewdistill.train.rollout import build_batch
from tests.conftest import save_tiny


def test_sft_batch_masks_prompt_and_padding():
    ids, mask, labels = sft_batch([([5, 6], [7, 8]), ([5], [9])], pad=0)
    assert ids.tolist() == [[5, 6, 7, 8], [5, 9, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.tolist() == [[-100, -100, 7, 8], [-100, 9, -100, -100]]


def test_build_batch_left_pads_prompts_right_pads_responses():
    ids, mask, resp_mask, P = build_batch([[1, 2], [3]], [[4], [5, 6]], pad=0)
    assert P == 2
    assert ids.tolist() == [[1, 2, 4, 0], [0, 3, 5, 6]]
    assert mask.tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]
    assert resp_mask.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_left_padding_does_not_change_log_probs(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    model = load_causal_lm(path)
    ids, mask, _, P = build_batch([[10, 11, 12], [10, 11, 12]], [[13, 14], [13, 14]], pad=other_tokenizer.pad_token_id)
    alone = token_logprobs(model, ids[:1], mask[:1], P)
    ids2, mask2, _, P2 = build_batch([[10, 11, 12], [20]], [[13, 14], [15]], pad=other_tokenizer.pad_token_id)
    padded = token_logprobs(model, ids2, mask2, P2)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_make_pairs_pairs_within_a_question():
    rows = [{"qid": "a", "label": 1}, {"qid": "a", "label": 0}, {"qid": "b", "label": 1}, {"qid": "a", "label": 1}]
    pairs = make_pairs(rows, random.Random(0))
    assert sorted(pairs) == [(0, 1), (3, 1)]  # question b has no label-0 response


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_reward_model_bt_and_bce_train(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    rows = [{"qid": f"q{i // 2}", "label": i % 2, "pair": ([10 + i % 5, 11], [12 + i % 2])} for i in range(16)]
    for loss in ["bce", "bt"]:
        model = load_reward_model(path)
        before = _params(model)
        logged = []
        train_reward_model(model, rows, other_tokenizer.pad_token_id, loss=loss, epochs=2, lr=1e-2, batch_size=4,
                           accelerator=Accelerator(cpu=True, gradient_accumulation_steps=2), seed=0, log=logged.append)
        assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged)
        assert any((a - b).abs().max() > 0 for a, b in zip(before, model.parameters()))


def test_ppo_micro_run_moves_policy_and_critic(tmp_path, other_tokenizer):
    path = save_tiny("qwen2", other_tokenizer, tmp_path / "m")
    tok = load_prompt_format(path)
    policy, ref = load_causal_lm(path), load_causal_lm(path)
    critic, rm = load_reward_model(path), load_reward_model(path)
    p0, c0 = _params(policy), _params(critic)
    logged = []
    cfg = RLCfg(algo="ppo", reward="rm", group_size=1, steps=2, rollout_batch=4, minibatch=2, max_new_tokens=8)
    train_rl(policy, ref, critic, tok, ["Question: a\nAnswer:", "Question: bb\nAnswer:"], cfg,
             reward_fn=make_rm_reward(rm), accelerator=Accelerator(cpu=True), seed=0, log=logged.append)
    assert len(logged) == 2
    for r in logged:
        for k in ["reward", "kl", "approx_kl", "clipfrac", "entropy", "value_loss", "pg_loss"]:
            assert torch.isfinite(torch.tensor(r[k])), k
        assert r["entropy"] > 0
    assert any((a - b).abs().max() > 0 for a, b in zip(p0, policy.parameters()))
    assert any((a - b).abs().max() > 0 for a, b in zip(c0, critic.parameters()))
