"""models/suffix.py: response-token log-probs with the last layer and the head run only where a response token is
predicted equal the full forward's (values and gradients, to float rounding) on Llama, Qwen2 (q/k/v bias) and
Qwen3 (q/k norms) shapes with GQA; the SFT loss and the likelihood reward model's scores that use it equal their
full-forward versions; and the cases it must not take (wrapped, compiled, attention dropout) fall back."""
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from rewdistill.models.reward import LikelihoodRM, batch_scores, pair_batch
from rewdistill.models.suffix import suffix_logprobs, usable
from rewdistill.train.common import sft_batch
from rewdistill.train.sft import sft_loss

V, PAD = 50, 0


def micro(kind: str, **extra):
    torch.manual_seed(0)
    common = dict(vocab_size=V, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=48, max_position_embeddings=128, pad_token_id=PAD, **extra)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    if kind == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=8))
    return Qwen2ForCausalLM(Qwen2Config(**common))


def random_pairs(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(1, V) for _ in range(rng.randint(1, 12))], [rng.randrange(1, V) for _ in
             range(rng.randint(1, 9))]) for _ in range(n)]


def full_logprobs(model, pairs):
    """Reference: the model's own forward over every position, log-probs of each response token. (B, R)."""
    ids, mask, _ = sft_batch(pairs, PAD)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (B, T, V)
    logp = F.log_softmax(logits[:, :-1], -1).gather(2, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    R = max(len(r) for _, r in pairs)
    out = torch.zeros(len(pairs), R)
    for b, (p, r) in enumerate(pairs):
        out[b, : len(r)] = logp[b, len(p) - 1 : len(p) - 1 + len(r)]
    return out


def suffix_of(model, pairs):
    ids, mask, _ = sft_batch(pairs, PAD)
    starts = torch.tensor([len(p) for p, _ in pairs])
    lengths = torch.tensor([len(r) for _, r in pairs])
    return suffix_logprobs(model, ids, mask, starts, lengths)


@pytest.fixture
def suffix_calls(monkeypatch):
    """Counts suffix_logprobs calls made through train.sft and models.reward (so a silent fallback shows)."""
    import rewdistill.models.reward as reward_module
    import rewdistill.train.sft as sft_module

    calls = []
    for module in (sft_module, reward_module):
        real = module.suffix_logprobs
        monkeypatch.setattr(module, "suffix_logprobs", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    return calls


@pytest.mark.parametrize("kind,attn", [("llama", "sdpa"), ("qwen2", "sdpa"), ("qwen3", "sdpa"), ("llama", "eager"),
                                       ("qwen3", "eager")])
def test_suffix_logprobs_equal_the_full_forward(kind, attn):
    model = micro(kind).train()
    model.config._attn_implementation = attn
    assert usable(model)
    pairs = random_pairs(7)
    ref = full_logprobs(model, pairs)
    got, valid = suffix_of(model, pairs)
    assert valid.sum() == sum(len(r) for _, r in pairs)
    assert torch.allclose(got, ref, atol=1e-5)
    assert (got[~valid] == 0).all()
    # gradients through every weight, with the loss SFT takes (mean over response tokens)
    g_ref = torch.autograd.grad(-ref.sum() / valid.sum(), list(model.parameters()))
    g_got = torch.autograd.grad(-got.sum() / valid.sum(), list(model.parameters()))
    for a, b in zip(g_ref, g_got):
        assert torch.allclose(a, b, atol=1e-6)


def test_sft_loss_suffix_equals_full_with_and_without_weights(suffix_calls):
    model = micro("llama").train()
    pairs = random_pairs(6, seed=1)
    full = sft_loss(model, pairs, PAD, "cpu")
    assert not suffix_calls
    fast = sft_loss(model, pairs, PAD, "cpu", suffix=True)
    assert suffix_calls == [1]
    assert torch.allclose(fast, full, atol=1e-6)
    w = [1.0, 3.0, 1.0, 2.0, 1.0, 1.0]
    assert torch.allclose(sft_loss(model, pairs, PAD, "cpu", weights=w, suffix=True),
                          sft_loss(model, pairs, PAD, "cpu", weights=w), atol=1e-6)
    assert len(suffix_calls) == 2
    empty_prompt = [([], [5, 6])] + pairs  # nothing predicts its first token: the full forward, as before
    assert torch.equal(sft_loss(model, empty_prompt, PAD, "cpu", suffix=True),
                       sft_loss(model, empty_prompt, PAD, "cpu"))
    assert len(suffix_calls) == 2


def test_likelihood_rm_suffix_scores_equal_full(suffix_calls):
    rm = LikelihoodRM(micro("qwen2"), scale=2.0, bias=-0.5)
    ids, mask, resp = pair_batch(random_pairs(5, seed=2), PAD)
    full = batch_scores(rm, ids, mask, resp)
    fast = batch_scores(rm, ids, mask, resp, suffix=True)
    assert suffix_calls == [1]
    assert torch.allclose(fast, full, atol=1e-5)
    left = torch.cat([mask[:1] * 0, mask[1:]])  # a row without its first column real: not right-padded, falls back
    assert torch.equal(batch_scores(rm, ids, left, resp, suffix=True), batch_scores(rm, ids, left, resp))
    assert suffix_calls == [1]
    empty = resp.clone()
    empty[0] = 0  # a row with an empty response scores as in the full forward (0 tokens: the bias)
    assert torch.allclose(batch_scores(rm, ids, mask, empty, suffix=True), batch_scores(rm, ids, mask, empty),
                          atol=1e-5)
    assert suffix_calls == [1, 1]


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_scalar_rm_suffix_scores_equal_full(kind, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    import rewdistill.models.reward as reward_module

    lm = micro(kind)
    lm.config.num_labels = 1
    rm = AutoModelForSequenceClassification.from_config(lm.config).train()  # a score head on the decoder
    calls = []
    real = reward_module.suffix_last_scores
    monkeypatch.setattr(reward_module, "suffix_last_scores", lambda *a: calls.append(1) or real(*a))
    assert usable(rm, "score") and not usable(rm)
    two_cfg = lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 2})
    two = AutoModelForSequenceClassification.from_config(two_cfg)
    assert not usable(two, "score")  # one score per row only
    ids, mask, resp = pair_batch(random_pairs(6, seed=4), PAD)  # rows of different lengths: the last token varies
    full = batch_scores(rm, ids, mask, resp)
    fast = batch_scores(rm, ids, mask, resp, suffix=True)
    assert calls == [1]
    assert torch.allclose(fast, full, atol=1e-5)
    w = torch.randn(len(full))  # gradients through every weight, a loss weighing each row differently
    for a, b in zip(torch.autograd.grad((w * full).sum(), list(rm.parameters())),
                    torch.autograd.grad((w * fast).sum(), list(rm.parameters()))):
        assert torch.allclose(a, b, atol=1e-5)
    left = torch.cat([mask[:1] * 0, mask[1:]])  # not right-padded: the full forward
    assert torch.equal(batch_scores(rm, ids, left, resp, suffix=True), batch_scores(rm, ids, left, resp))
    assert calls == [1]


def test_calibration_scores_through_the_suffix_forward(suffix_calls):
    import random as rnd

    from rewdistill.train.reward_model import calibrate

    pairs = random_pairs(40, seed=5)
    rows = [{"pair": p, "label": int(len(p[1]) % 2)} for p in pairs]
    fits = []
    for suffix in (False, True):
        rm = LikelihoodRM(micro("qwen2"))
        calibrate(rm, rows, PAD, rnd.Random(0), suffix=suffix)
        fits.append((float(rm.scale), float(rm.bias)))
    assert len(suffix_calls) == 1  # one batch of 40, scored through models.suffix only when asked
    assert fits[0] == pytest.approx(fits[1], rel=1e-4)


def test_usable_refuses_what_it_cannot_reproduce():
    model = micro("llama").train()
    assert usable(model)
    assert not usable(type("Wrapped", (), {"module": model})())  # DDP / FSDP 1 hold the model as .module
    assert not usable(torch.compile(model))
    assert not usable(micro("llama", attention_dropout=0.1).train())
    assert usable(micro("llama", attention_dropout=0.1).eval())
    flash = micro("llama")
    flash.config._attn_implementation = "flex_attention"
    assert not usable(flash)


def test_train_sft_takes_the_suffix_path_when_asked(monkeypatch):
    from accelerate import Accelerator

    import rewdistill.train.sft as sft_module

    calls = []
    real = sft_module.suffix_logprobs

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(sft_module, "suffix_logprobs", spy)
    pairs = random_pairs(8, seed=3)
    for suffix in (False, True):
        logged = []
        sft_module.train_sft(micro("llama"), pairs, PAD, epochs=2, lr=1e-2, batch_size=4, warmup_frac=0.0,
                             weight_decay=0.0, accelerator=Accelerator(cpu=True), seed=0, log=logged.append,
                             suffix=suffix)
        assert len(calls) == (4 if suffix else 0)  # 2 epochs x 2 batches
        assert logged[-1]["loss"] < logged[0]["loss"]
