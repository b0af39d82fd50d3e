"""RL question batching (`rl.batching question`): minibatches of whole groups, each group one packed row. The same
log-probs, entropies, reference log-probs, reward-model scores and update as the padded rows, by hand and on the
shipped student."""
from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from rewdistill.config import RLCfg
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model
from rewdistill.models.packed import pack_pairs, to_padded
from rewdistill.models.reward import LikelihoodRM
from rewdistill.train.rewards import make_rm_reward
from rewdistill.train.rl_loop import train_rl
from rewdistill.train.rollout import rollout_token_lists, sample_rollout
from rewdistill.train.updates import _group_minibatches, _minibatches, actor_update, policy_logprobs

PROMPTS = ["Question: What is 12 + 7 - 3?\nAnswer:", "Question: What is 4 + 9?\nAnswer:",
           "Question: What is 15 - 6 + 2?\nAnswer:"]


def test_group_minibatches_hold_whole_groups_and_cover_the_rollout():
    B, G = 12, 3
    batches = [mb.tolist() for mb in _group_minibatches(B, 6, G, 2, seed=0)]
    assert len(batches) == 4  # 2 epochs x 2 minibatches of 2 groups
    for mb in batches:
        assert len(mb) == 6
        groups = {i // G for i in mb}
        assert len(groups) == 2 and sorted(mb) == sorted(g * G + k for g in groups for k in range(G))
    for epoch in (batches[:2], batches[2:]):
        assert sorted(i for mb in epoch for i in mb) == list(range(B))
    assert [len(mb) for mb in _group_minibatches(B, 2, G, 1, seed=0)] == [3] * 4  # smaller than a group: one group
    with pytest.raises(ValueError, match="not whole groups"):
        next(_group_minibatches(10, 6, G, 1, seed=0))
    random_ones = [set(mb.tolist()) for mb in _minibatches(B, 6, 1, seed=0)]
    assert any(len({i // G for i in mb}) > 2 for mb in random_ones)  # what random batching does instead


def test_to_padded_by_hand():
    pairs = [([1, 2], [5, 6, 7]), ([3], [8]), ([1, 2], [9, 4])]
    b = pack_pairs(pairs, pad=0)
    values = torch.arange(1.0, 7.0)  # tokens in pair order: 5 6 7 | 8 | 9 4
    assert to_padded(values, b, 4).tolist() == [[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0]]


@pytest.fixture(scope="module")
def rollouts():
    """The same rollout of 3 prompts x 4 responses from the shipped student, sampled with random and with question
    batching (only the reference's forward differs)."""
    torch.manual_seed(0)
    policy, ref = load_causal_lm("zoo:student").eval(), load_causal_lm("zoo:student").eval()
    fmt = load_prompt_format("zoo:student")
    encoded = [fmt.prompt_ids(p) for p in PROMPTS]
    out = {}
    for batching in ("random", "question"):
        cfg = RLCfg(group_size=4, max_new_tokens=12, batching=batching, temperature=2.0)  # diverse responses
        out[batching] = sample_rollout(policy, ref, fmt, PROMPTS, encoded, [0, 1, 2], 4, cfg, "cpu", seed=3)
    return policy, out


def test_packed_reference_logprobs_equal_padded(rollouts):
    _, ro = rollouts
    a, b = ro["random"], ro["question"]
    assert a.texts == b.texts and torch.equal(a.resp_mask, b.resp_mask)
    assert len(set(a.texts)) > 3  # the groups hold different responses of different lengths
    assert torch.allclose(a.ref_logp, b.ref_logp, atol=1e-5)
    assert (b.ref_logp[b.resp_mask == 0] == 0).all()


def test_packed_policy_logprobs_and_entropies_equal_padded(rollouts):
    policy, ro = rollouts
    r = ro["random"]
    mb = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])  # two whole groups, in the order a group minibatch gives them
    want_lp, want_ent = policy_logprobs(policy, r, mb, 0.7)
    got_lp, got_ent = policy_logprobs(policy, r, mb, 0.7, rollout_token_lists(r))
    m = r.resp_mask[mb]
    assert torch.allclose(got_lp, want_lp * m, atol=1e-5)
    assert torch.allclose(got_ent, want_ent * m, atol=1e-5)


@pytest.mark.parametrize("kind", ["likelihood", "scalar"])
def test_packed_reward_model_scores_equal_padded(rollouts, kind):
    _, ro = rollouts
    if kind == "likelihood":
        rm = LikelihoodRM(load_causal_lm("zoo:teacher").eval(), scale=2.0, bias=-0.5)  # the student's tokenizer
    else:
        torch.manual_seed(1)
        rm = load_reward_model("zoo:student").eval()  # a seeded random head
    padded, packed = make_rm_reward(rm)(ro["random"]), make_rm_reward(rm, packed=True)(ro["random"])
    assert padded.shape == (12,) and padded.std() > 0 and torch.allclose(padded, packed, atol=1e-5)


def test_one_minibatch_update_is_the_same_with_either_batching(rollouts):
    """With the whole rollout as one minibatch both batchings see the same responses: the update must agree."""
    policy, ro = rollouts
    r = ro["random"]
    adv = torch.linspace(-1, 1, 12)[:, None] * r.resp_mask  # (B, T)
    after = {}
    for batching in ("random", "question"):
        p = copy.deepcopy(policy)
        opt = torch.optim.SGD(p.parameters(), lr=1.0)  # the step is the (clipped) gradient itself
        cfg = RLCfg(group_size=4, ppo_epochs=1, batching=batching, temperature=2.0)  # as sampled
        stats = actor_update(p, opt, r, adv, cfg, Accelerator(cpu=True), seed=0, kl_loss_coef=0.1, minibatch=12)
        after[batching] = (torch.cat([q.detach().flatten() for q in p.parameters()]), stats)
    (a, sa), (b, sb) = after["random"], after["question"]
    before = torch.cat([q.detach().flatten() for q in policy.parameters()])
    assert (a - before).abs().max() > 1e-4  # the step moved the weights ...
    assert torch.allclose(a, b, atol=1e-5)  # ... the same way
    for k in ("pg_loss", "kl_loss", "entropy"):
        assert sa[k] == pytest.approx(sb[k], rel=1e-5, abs=1e-6), k


def test_grpo_trains_with_question_batching():
    policy, ref = load_causal_lm("zoo:student"), load_causal_lm("zoo:student")
    fmt = load_prompt_format("zoo:student")
    p0 = [p.detach().clone() for p in policy.parameters()]
    cfg = RLCfg(steps=2, rollout_batch=2, group_size=4, minibatch=4, max_new_tokens=8, batching="question",
                temperature=2.0)  # diverse responses: rewards differ within a group
    logged = []
    token_reward = lambda ro: ro.ids[:, ro.P:].float().mean(1) / 100  # noqa: E731  differs within a group
    train_rl(policy, ref, None, fmt, PROMPTS, cfg, reward_fn=token_reward, accelerator=Accelerator(cpu=True),
             seed=0, log=logged.append)
    assert [r["step"] for r in logged] == [1, 2] and all(r["skipped"] == 0 for r in logged)
    assert any((a - b).abs().max() > 0 for a, b in zip(p0, policy.parameters()))


def test_the_update_packs_minibatches_of_whole_groups(rollouts, monkeypatch):
    """Question batching: minibatches of 8 from groups of 4 are two whole groups: 8 responses to 2 prompts."""
    import rewdistill.train.updates as updates

    policy, ro = rollouts
    rows = []

    def spy(prompt_ids, resp_ids):
        b = updates.pack_rollout.__wrapped__(prompt_ids, resp_ids)
        rows.append((len({tuple(p) for p in prompt_ids}), b.n_pairs))  # (prompts, responses) packed together
        return b

    spy.__wrapped__ = updates.pack_rollout
    monkeypatch.setattr(updates, "pack_rollout", spy)
    opt = torch.optim.SGD(copy.deepcopy(policy).parameters(), lr=0.0)
    cfg = RLCfg(group_size=4, ppo_epochs=2, batching="question", temperature=2.0)
    r = ro["random"]
    actor_update(copy.deepcopy(policy), opt, r, torch.zeros_like(r.resp_mask), cfg, Accelerator(cpu=True), seed=1,
                 minibatch=8)
    assert sorted(rows) == sorted([(2, 8), (1, 4)] * 2)  # 12 responses per epoch: 8 (two groups), then 4 (one)


def test_filter_groups_keeps_whole_groups_for_question_batching():
    """rl.filter_groups drops the groups whose rewards are all equal: what is left is still whole groups, which the
    question batching's minibatches need (a rollout that is not whole groups is refused)."""
    policy, ref = load_causal_lm("zoo:student"), load_causal_lm("zoo:student")
    fmt = load_prompt_format("zoo:student")
    p0 = [p.detach().clone() for p in policy.parameters()]
    cfg = RLCfg(steps=2, rollout_batch=2, group_size=4, minibatch=8, max_new_tokens=8, batching="question",
                temperature=2.0, filter_groups=True, unfinished_penalty=None)  # 8 tokens: most are cut

    def reward(ro):  # differs within the groups of prompts 0 and 2, constant for prompt 1: its group is dropped
        return torch.tensor([ro.ids[i, ro.P:].float().mean().item() / 100 if k != 1 else 0.0
                             for i, k in enumerate(ro.idx)])

    logged = []
    train_rl(policy, ref, None, fmt, PROMPTS, cfg, reward_fn=reward, accelerator=Accelerator(cpu=True), seed=0,
             log=logged.append)
    assert all(r["skipped"] == 0 for r in logged)
    assert 0.5 in [r["mixed_frac"] for r in logged]  # prompt 1 came up (two steps of 2 cover the 3 prompts)
    assert any((a - b).abs().max() > 0 for a, b in zip(p0, policy.parameters()))
