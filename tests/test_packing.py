"""Shared-prompt packing (`models.packed`, `sft.batching` / `reward_model.batching` question): the layout by hand,
the same log-probs, losses, gradients and scores as padded rows, and batches that hold whole questions."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from rewdistill.models.forward import token_logprobs
from rewdistill.models.load import load_causal_lm, load_reward_model
from rewdistill.models.packed import block_mask, pack_pairs, packed_logprobs, plan_rows
from rewdistill.models.reward import LikelihoodRM, batch_scores, packed_scores, pair_batch, score_pairs
from rewdistill.train.loop import grouped_shuffle
from rewdistill.train.reward_model import train_reward_model
from rewdistill.train.sft import sft_loss, train_sft
from tests.conftest import save_tiny

# two prompts, three responses to the first (of different lengths), one to the second
PAIRS = [([10, 11, 12], [20, 21]), ([30, 31], [40]), ([10, 11, 12], [22, 23, 24]), ([10, 11, 12], [25])]


def test_pack_pairs_layout_by_hand():
    b = pack_pairs(PAIRS, pad=0)
    assert b.ids.tolist() == [[10, 11, 12, 20, 21, 22, 23, 24, 25], [30, 31, 40, 0, 0, 0, 0, 0, 0]]
    assert b.pos.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5, 3], [0, 1, 2, 0, 0, 0, 0, 0, 0]]
    m = b.mask[0, 0].int()
    assert m[4].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]  # 21 sees the prompt and 20
    assert m[7].tolist() == [1, 1, 1, 0, 0, 1, 1, 1, 0]  # 24 sees the prompt and 22 23, not 20 21
    assert m[8].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1]  # 25 sees the prompt only
    assert b.mask[1, 0, 5].int().tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]  # padding sees itself
    w = 9  # tokens in pair order; each predicted at the prompt's last token or at its own previous token
    assert b.tgt.tolist() == [20, 21, 40, 22, 23, 24, 25]
    assert b.src.tolist() == [2, 3, w + 1, 2, 5, 6, 2]
    assert b.seq.tolist() == [0, 0, 1, 2, 2, 2, 3]
    assert b.last.tolist() == [4, w + 2, 7, 8]


def test_pack_pairs_caps_rows_and_keeps_every_token():
    b = pack_pairs(PAIRS, pad=0, max_len=6)  # 3 + 2, then + 3 > 6: new row 3 + 3, then + 1 > 6: a third row
    assert b.ids.shape[0] == 4
    assert sorted(b.tgt.tolist()) == sorted(t for _, r in PAIRS for t in r)


def reference_mask(pairs, width, plan):
    """The block mask written out with loops, one row of `plan` (prompt, pair indices) at a time."""
    mask = torch.zeros((len(plan), width, width), dtype=torch.bool)
    for row, (p, idx) in enumerate(plan):
        n = len(p)
        for q in range(n):
            mask[row, q, : q + 1] = True  # the prompt, causally
        at = n
        for i in idx:
            for t in range(len(pairs[i][1])):
                mask[row, at + t, :n] = True  # a response token sees the prompt and its own earlier tokens
                mask[row, at + t, at : at + t + 1] = True
            at += len(pairs[i][1])
        for q in range(at, width):
            mask[row, q, q] = True  # padding sees itself only
    return mask


def test_pack_pairs_mask_and_indices_match_loops_on_random_batches():
    rng = random.Random(0)
    for case in range(60):
        prompts = [[rng.randrange(1, 50) for _ in range(rng.randrange(1, 9))] for _ in range(rng.randrange(1, 4))]
        pairs = [(rng.choice(prompts), [rng.randrange(1, 50) for _ in range(rng.randrange(1, 7))])
                 for _ in range(rng.randrange(1, 10))]
        cap = rng.choice([None, 6, 12])
        b = pack_pairs(pairs, pad=0, max_len=cap)
        plan = plan_rows(pairs, cap or 2 * max(len(p) + len(r) for p, r in pairs))
        width = b.ids.shape[1]
        assert torch.equal(b.mask[:, 0], reference_mask(pairs, width, plan)), case
        flat_ids = b.ids.reshape(-1)
        for i, (p, r) in enumerate(pairs):  # each token's target, and the position that predicts it holds the
            toks = (b.seq == i).nonzero()[:, 0]  # token before it (the prompt's last token for the first)
            assert b.tgt[toks].tolist() == r, case
            assert flat_ids[b.src[toks]].tolist() == [p[-1], *r[:-1]], case
            assert flat_ids[b.last[i]].item() == r[-1], case


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_equal_padded_rows(tmp_path, other_tokenizer, attn):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    lm = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()
    for cap in [None, 6]:
        got = packed_logprobs(lm, pack_pairs(PAIRS, pad=0, max_len=cap))
        want = []
        for p, r in PAIRS:  # each pair on its own, unpadded
            ids = torch.tensor([p + r])
            want += token_logprobs(lm, ids, torch.ones_like(ids), len(p))[0].tolist()
        assert torch.allclose(got, torch.tensor(want), atol=1e-5), cap


def test_an_attention_that_ignores_block_masks_is_refused():
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    with pytest.raises(ValueError, match="sdpa or eager"):
        block_mask(model, pack_pairs(PAIRS, pad=0))


def test_packed_sft_loss_and_gradients_equal_padded(tmp_path, other_tokenizer):
    lm = load_causal_lm(save_tiny("llama", other_tokenizer, tmp_path / "m"))
    params = list(lm.parameters())
    padded = sft_loss(lm, PAIRS, 0, "cpu")
    packed = sft_loss(lm, PAIRS, 0, "cpu", packed=True)
    assert abs(padded.item() - packed.item()) < 1e-5
    for a, b in zip(torch.autograd.grad(padded, params), torch.autograd.grad(packed, params)):
        assert torch.allclose(a, b, atol=1e-5)


def test_packed_reward_scores_equal_padded(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    ids, mask, resp = pair_batch(PAIRS, 0)
    b = pack_pairs(PAIRS, 0)
    rm = LikelihoodRM(load_causal_lm(path), scale=2.0, bias=-1.0).eval()
    assert torch.allclose(packed_scores(rm, b), batch_scores(rm, ids, mask, resp), atol=1e-5)
    head = load_reward_model(path).eval()  # scalar: the head at each response's last token
    assert torch.allclose(packed_scores(head, b), batch_scores(head, ids, mask, resp), atol=1e-5)


def test_packed_score_pairs_equal_padded_in_the_callers_order(tmp_path, other_tokenizer, monkeypatch):
    """score_pairs(packed=True), evaluation's scoring: pairs grouped by prompt and packed, scores back in the caller's
    order, across batch boundaries; a pair with an empty response sends the call down the padded path."""
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    rng = random.Random(0)
    prompts = [[rng.randrange(5, 60) for _ in range(rng.randint(2, 9))] for _ in range(5)]
    pairs = [(rng.choice(prompts), [rng.randrange(5, 60) for _ in range(rng.randint(1, 6))]) for _ in range(23)]
    import rewdistill.models.reward as reward_module

    packed_rows = []
    real = reward_module.pack_pairs
    monkeypatch.setattr(reward_module, "pack_pairs", lambda ps, pad: packed_rows.append(len(ps)) or real(ps, pad))
    for rm in (LikelihoodRM(load_causal_lm(path), scale=2.0, bias=-1.0), load_reward_model(path)):
        padded = score_pairs(rm, pairs, 0, batch_size=4)
        assert not packed_rows
        packed = score_pairs(rm, pairs, 0, batch_size=4, packed=True)
        assert packed_rows == [4, 4, 4, 4, 4, 3]  # packing took place, 4 pairs a batch ...
        assert torch.allclose(torch.tensor(packed), torch.tensor(padded), atol=1e-5)  # ... with the same scores
        packed_rows.clear()
        with_empty = pairs + [(prompts[0], [])]  # an empty response: the padded path
        assert score_pairs(rm, with_empty, 0, batch_size=4, packed=True) == score_pairs(rm, with_empty, 0, batch_size=4)


def test_packed_scoring_only_where_packing_keeps_the_scores(tmp_path, other_tokenizer):
    """packs(): rotary-position families with full attention and SDPA / eager attention; a model whose positions
    do not come from position_ids (GPT-2 here: learned, like ALiBi models it could differ) or a sliding window is
    scored padded."""
    from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

    from rewdistill.models.reward import packs

    assert packs(LikelihoodRM(load_causal_lm(save_tiny("llama", other_tokenizer, tmp_path / "m"))))
    assert not packs(LikelihoodRM(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))))
    windowed = MistralConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
                             intermediate_size=32, vocab_size=50, sliding_window=4)
    assert not packs(LikelihoodRM(MistralForCausalLM(windowed)))


def test_grouped_shuffle_keeps_a_question_together():
    items = list(range(40))
    out = grouped_shuffle(list(items), lambda i: i % 7, random.Random(0))
    assert sorted(out) == items
    keys = [i % 7 for i in out]
    runs = [k for j, k in enumerate(keys) if j == 0 or keys[j - 1] != k]
    assert len(runs) == 7  # each group one run
    assert out == grouped_shuffle(list(items), lambda i: i % 7, random.Random(0))  # the seed fixes the order
    assert out != grouped_shuffle(list(items), lambda i: i % 7, random.Random(1))


def test_question_batching_trains_sft_and_reward_model(tmp_path, other_tokenizer):
    """Batches hold whole questions (the grouped order reaches the loss) and both loops learn."""
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    pairs = [([10 + q, 11], [12 + (i % 3), 13]) for q in range(6) for i in range(4)]  # 6 prompts x 4 responses
    seen = []
    import rewdistill.train.sft as sft_module

    real = sft_module.sft_loss

    def spy(model, chunk, *a, **k):
        seen.append({tuple(p) for p, _ in chunk})
        return real(model, chunk, *a, **k)

    sft_module.sft_loss = spy
    try:
        logged = []
        train_sft(load_causal_lm(path), pairs, 0, epochs=3, lr=1e-2, batch_size=4, warmup_frac=0.0,
                  weight_decay=0.0, accelerator=Accelerator(cpu=True), seed=0, log=logged.append,
                  batching="question")
    finally:
        sft_module.sft_loss = real
    assert all(len(s) == 1 for s in seen)  # 4 responses per prompt, batch 4: every batch is one whole question
    assert logged[-1]["loss"] < logged[0]["loss"]
    rows = [{"qid": f"q{i // 4}", "label": int(i % 4 == 0), "pair": pairs[i]} for i in range(len(pairs))]
    rm = LikelihoodRM(load_causal_lm(path))
    logged = []
    train_reward_model(rm, rows, 0, loss="bce", epochs=3, lr=1e-2, batch_size=4, accelerator=Accelerator(cpu=True),
                       seed=0, log=logged.append, batching="question")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged)


def test_random_batching_is_left_out_of_the_stage_hashes():
    """Runs made before `batching` existed (random batching) keep their hashes; question batching reruns the stage."""
    from rewdistill.config_files import load_config
    from rewdistill.stage_list import hashed, section_hash, stage_hashes

    cfg = load_config(None, {"sft.batching": "random", "reward_model.batching": "random"})
    assert "batching" not in hashed(cfg.sft) and "batching" not in hashed(cfg.reward_model)
    assert "epochs" in hashed(cfg.sft)
    base = stage_hashes(cfg)
    sft_q = stage_hashes(load_config(None, {"sft.batching": "question", "reward_model.batching": "random"}))
    rm_q = stage_hashes(load_config(None, {"sft.batching": "random", "reward_model.batching": "question"}))
    assert sft_q["pseudo-label"] == base["pseudo-label"] and sft_q["sft"] != base["sft"]
    assert rm_q["student-sample"] == base["student-sample"] and rm_q["reward-model"] != base["reward-model"]
    rl_r = stage_hashes(load_config(None, {"rl.batching": "random"}))
    rl_q = stage_hashes(load_config(None, {"rl.batching": "question"}))
    assert "batching" not in hashed(load_config(None, {"rl.batching": "random"}).rl)
    before = load_config(None, {"rl.batching": "random"})  # the rl hash as it was before rl.batching existed
    assert rl_r["rl"] == section_hash(before.rl.model_dump(exclude={"rounds", "batching"}), before.lora,
                                      rl_r["reward-model"])
    ppo = {"rl.algo": "ppo", "rl.reward": "rm", "rl.group_size": "1"}  # one response per prompt: nothing packed
    assert stage_hashes(load_config(None, {**ppo, "rl.batching": "question"}))["rl"] == \
        stage_hashes(load_config(None, {**ppo, "rl.batching": "random"}))["rl"]
    assert rl_q["reward-model"] == rl_r["reward-model"] and rl_q["rl"] != rl_r["rl"]


def test_a_process_gets_a_contiguous_share_of_a_batch_of_whole_questions():
    from rewdistill.train.common import shard_of

    items = list(range(8))
    procs = [SimpleNamespace(num_processes=2, process_index=i) for i in range(2)]
    assert [shard_of(items, p) for p in procs] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert [shard_of(items, p, contiguous=True) for p in procs] == [[0, 1, 2, 3], [4, 5, 6, 7]]
