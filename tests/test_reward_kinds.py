"""The likelihood reward model (`reward_model.kind likelihood`): its score is the formula, it saves and reloads as a
plain causal LM, and training on labels moves a planted pair the right way."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from rewdistill.algo.losses import fit_logistic
from rewdistill.models.load import load_causal_lm
from rewdistill.models.reward import LikelihoodRM, kind_of, load_reward, pair_batch, score_pairs
from rewdistill.train.reward_model import train_reward_model
from tests.conftest import save_tiny


def test_likelihood_score_is_scaled_mean_logprob_of_the_response(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    lm = load_causal_lm(path).eval()
    prompt, response = [10, 11, 12], [13, 14]
    # by hand: the LM's log-prob of each response token after the prompt, one unpadded forward
    logits = lm(input_ids=torch.tensor([prompt + response])).logits[0]  # (5, V)
    logp = F.log_softmax(logits, -1)
    by_hand = (logp[2, 13] + logp[3, 14]) / 2  # position 2 predicts token 13, position 3 predicts 14
    rm = LikelihoodRM(lm, scale=3.0, bias=-0.5)
    # scored beside a longer pair, so that right padding is exercised too
    got = score_pairs(rm, [(prompt, response), ([20, 21, 22, 23], [24, 25, 26])], other_tokenizer.pad_token_id)
    assert abs(got[0] - (3.0 * by_hand.item() - 0.5)) < 1e-5


def test_pair_batch_marks_only_response_tokens():
    ids, mask, resp = pair_batch([([5, 6], [7]), ([5], [8, 9, 10])], pad=0)
    assert ids.tolist() == [[5, 6, 7, 0], [5, 8, 9, 10]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert resp.tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]


def test_fit_logistic_recovers_a_known_slope():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g)
    y = (torch.rand(4000, generator=g) < torch.sigmoid(2.0 * x - 1.0)).float()
    a, b = fit_logistic(x, y)
    assert abs(a - 2.0) < 0.25 and abs(b + 1.0) < 0.15


def test_saved_likelihood_rm_reloads_with_the_same_scores(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    rm = LikelihoodRM(load_causal_lm(path), scale=2.0, bias=0.25)
    rm.stamp()
    rm.lm.save_pretrained(tmp_path / "rm")
    other_tokenizer.save_pretrained(tmp_path / "rm")
    assert kind_of(str(tmp_path / "rm")) == "likelihood" and kind_of(path) == "scalar"
    pairs = [([10, 11], [12, 13]), ([14], [15])]
    again = load_reward(str(tmp_path / "rm"))
    assert score_pairs(again, pairs, 0) == score_pairs(rm, pairs, 0)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "rm")  # plain transformers: config carries the head
    assert plain.config.reward_kind == "likelihood" and plain.config.reward_scale == 2.0


def test_likelihood_rm_trains_loss_falls_and_planted_pair_flips(tmp_path, other_tokenizer):
    """Per question a right answer (label 1) and a wrong one (label 0) that differ in one token; after training the
    right one of a held-out question built the same way scores higher."""
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    rng = random.Random(0)
    rows, right, wrong = [], 30, 31  # token 30 marks a right answer, 31 a wrong one
    for q in range(24):
        prompt = [10 + q % 7, 11 + q % 5, 12]
        rows.append({"qid": f"q{q}", "label": 1, "pair": (prompt, [40 + rng.randrange(5), right])})
        rows.append({"qid": f"q{q}", "label": 0, "pair": (prompt, [40 + rng.randrange(5), wrong])})
    held = [([17, 18, 12], [42, right]), ([17, 18, 12], [42, wrong])]
    torch.manual_seed(0)
    lm = load_causal_lm(path)
    opt = torch.optim.SGD(lm.parameters(), lr=0.2)
    for _ in range(10):  # plant the opposite preference: a few steps of language modelling on wrong answers
        wrongs = torch.tensor([p + r for p, r in (row["pair"] for row in rows if not row["label"])])  # (24, 5)
        logits = lm(input_ids=wrongs).logits
        loss = torch.nn.functional.cross_entropy(logits[:, -2], torch.full((len(logits),), wrong))
        opt.zero_grad()
        loss.backward()
        opt.step()
    rm = LikelihoodRM(lm)
    margin = lambda: score_pairs(LikelihoodRM(rm.lm), held, 0)  # noqa: E731  mean log-prob, right - wrong
    before = margin()
    assert before[0] < before[1]  # the planted preference: the init ranks the wrong answer first
    logged = []
    train_reward_model(rm, rows, other_tokenizer.pad_token_id, loss="bce", epochs=6, lr=1e-2, batch_size=8,
                       accelerator=Accelerator(cpu=True), seed=0, log=logged.append)
    after = margin()
    scores = score_pairs(rm, held, other_tokenizer.pad_token_id)
    losses = [r["loss"] for r in logged if "loss" in r]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    assert after[0] > after[1]  # the language model itself now prefers the right answer ...
    assert scores[0] > scores[1] and rm.scale.item() > 0  # ... and so does the reward
