"""The fast sampling engine (sampling/fast.py) against transformers' generate: identical greedy outputs on the
shipped models and on other Llama-family shapes (GQA, q/k/v bias, Qwen3's q/k norms, LoRA), correct log-probs,
the right sampling distribution, seeds, order, and the fallback for architectures it does not handle."""
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from rewdistill.models.forward import token_logprobs
from rewdistill.models.load import load_causal_lm, load_prompt_format
from rewdistill.models.prompt import PromptFormat
from rewdistill.sampling import fast
from rewdistill.sampling.hf import generate
from rewdistill.tasks import get_task
from rewdistill.train.rollout import build_batch


def task_prompts(name: str, k: int) -> list[str]:
    task = get_task(name)
    return [task.prompt(e) for e in task.load("test")[:k]]


def same_greedy(model, tok, prompts, batch_size, n=1, max_new_tokens=48):
    ref = generate(model, tok, prompts, 0.0, n, max_new_tokens, batch_size, engine="hf")
    got = generate(model, tok, prompts, 0.0, n, max_new_tokens, batch_size, engine="fast")
    assert [g.prompt_index for g in got] == [g.prompt_index for g in ref]
    assert [g.finished for g in got] == [g.finished for g in ref]
    assert [g.text for g in got] == [g.text for g in ref]
    return got


def test_greedy_equals_generate_on_shipped_models():
    for name in ["zoo:teacher", "zoo:student"]:
        model, tok = load_causal_lm(name).eval(), load_prompt_format(name)
        assert fast.supports(model)
        for task in ["tiny-arith", "tiny-choice"]:
            got = same_greedy(model, tok, task_prompts(task, 40), batch_size=16)
            assert any(g.finished for g in got) or name == "zoo:student"
        # n copies share one prompt pass; n larger than the batch is split over batches
        same_greedy(model, tok, task_prompts("tiny-arith", 6), batch_size=4, n=5)


def random_model(kind: str, tok):
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=96, max_position_embeddings=512,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False)).eval()
    if kind == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=16)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).eval()  # q/k/v projections with bias


def test_greedy_equals_generate_on_other_llama_family_shapes(other_tokenizer):
    prompts = task_prompts("tiny-arith", 12)
    for kind in ["llama", "qwen2", "qwen3"]:
        model = random_model(kind, other_tokenizer)
        if kind == "qwen2":  # random init leaves biases at zero; make them count
            for layer in model.model.layers:
                torch.nn.init.normal_(layer.self_attn.q_proj.bias, std=0.5)
                torch.nn.init.normal_(layer.self_attn.k_proj.bias, std=0.5)
        assert fast.supports(model)
        same_greedy(model, PromptFormat.from_tokenizer(other_tokenizer), prompts, batch_size=5, max_new_tokens=24)


def test_lora_wrapped_model_uses_its_adapters(other_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(random_model("llama", other_tokenizer),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-zero adapter changes the outputs
    assert fast.supports(model)
    same_greedy(model, PromptFormat.from_tokenizer(other_tokenizer), task_prompts("tiny-arith", 6), batch_size=4,
                max_new_tokens=16)


def test_logprobs_match_a_full_forward_and_seeds_repeat():
    model, tok = load_causal_lm("zoo:teacher").eval(), load_prompt_format("zoo:teacher")
    prompts = task_prompts("tiny-arith", 5)
    gens = generate(model, tok, prompts, 0.8, 3, 40, 8, seed=4, logprobs=True)
    assert [g.prompt_index for g in gens] == [i for i in range(5) for _ in range(3)]
    again = generate(model, tok, prompts, 0.8, 3, 40, 8, seed=4)
    other = generate(model, tok, prompts, 0.8, 3, 40, 8, seed=5)
    assert [g.token_ids for g in gens] == [g.token_ids for g in again]
    assert [g.token_ids for g in gens] != [g.token_ids for g in other]
    ids, mask, resp_mask, P = build_batch([tok.prompt_ids(prompts[g.prompt_index]) for g in gens],
                                          [g.token_ids for g in gens], tok.pad_id)
    with torch.no_grad():
        want = token_logprobs(model, ids, mask, P, 0.8) * resp_mask  # (B, T)
    for r, g in enumerate(gens):
        assert len(g.logprobs) == len(g.token_ids)
        assert torch.allclose(torch.tensor(g.logprobs), want[r, : len(g.token_ids)], atol=1e-4)
        assert g.finished == (g.token_ids[-1] == tok.eos_id)


def test_samples_follow_softmax_of_logits_over_temperature():
    model, tok = load_causal_lm("zoo:teacher").eval(), load_prompt_format("zoo:teacher")
    prompt = task_prompts("tiny-choice", 1)[0] + " The answer is ("
    gens = generate(model, tok, [prompt], 1.3, 3000, 1, 1000, seed=0)
    ids = torch.tensor([tok.prompt_ids(prompt)])
    with torch.no_grad():
        probs = F.softmax(model(input_ids=ids).logits[0, -1].float() / 1.3, -1)  # (V,)
    counts = torch.bincount(torch.tensor([g.token_ids[0] for g in gens]), minlength=len(probs)).float()

    def tv(c, p):  # total variation between empirical counts and a distribution
        return 0.5 * (c / c.sum() - p).abs().sum().item()

    torch.manual_seed(1)  # the distance 3000 exact draws land at, on average
    noise = sum(tv(torch.bincount(torch.multinomial(probs, 3000, True), minlength=len(probs)).float(), probs)
                for _ in range(20)) / 20
    at_t1 = F.softmax(torch.log(probs) * 1.3, -1)  # the distribution at T = 1: a sampler ignoring T
    assert probs.max() < 0.9  # a spread-out distribution, so the check means something
    assert tv(counts, probs) < 1.5 * noise, (tv(counts, probs), noise)
    assert tv(counts, at_t1) > 1.5 * noise, (tv(counts, at_t1), noise)


def test_draw_follows_the_distribution_and_never_draws_a_zero(monkeypatch):
    from rewdistill.sampling.fast import draw

    torch.manual_seed(0)
    probs = F.softmax(torch.randn(4, 30) * 2, -1)
    probs[:, ::3] = 0.0  # tokens that must never come out, the first and the last among them
    probs[:, 29] = 0.0
    probs = probs / probs.sum(-1, keepdim=True)
    rows = probs.repeat_interleave(5000, 0)  # (20000, 30): 5000 draws from each row's distribution
    tok = draw(rows).view(4, 5000)
    assert probs.gather(1, tok).min() > 0
    for r in range(4):  # chi-square against the row's probabilities (27 degrees of freedom at most: 99.9% < 55.5)
        seen = torch.bincount(tok[r], minlength=30).float()
        want = probs[r] * 5000
        on = want > 0
        assert ((seen[on] - want[on]) ** 2 / want[on]).sum() < 55.5
    edge = torch.tensor([[0.5, 0.5, 0.0, 0.0]])  # u rounded up to the row's sum: the last non-zero token
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(*a[:2], dtype=torch.float64))  # u = 1: past the end
    assert draw(edge).tolist() == [1]
    monkeypatch.undo()
    for bad in (torch.full((1, 4), float("nan")), torch.zeros(1, 4), torch.tensor([[0.5, float("inf"), 0.0, 0.0]]),
                torch.tensor([[1.5, -0.5, 0.0, 0.0]])):  # not a distribution: an error, as torch.multinomial gives
        with pytest.raises(RuntimeError, match="probability tensor"):
            draw(bad)


def test_draw_keeps_small_probabilities_after_a_large_one(monkeypatch):
    """Token i is drawn when u lands in its exact interval [sum p_<i, sum p_<=i). A token of probability 1e-9 after
    0.9 of the mass has an interval narrower than a float32 step there (6e-8): a float32 running sum gives it width 0
    (never drawn), a float32 u cannot land in it; each would draw its neighbour here."""
    from rewdistill.sampling.fast import draw

    probs = torch.full((1, 1000), 0.1 / 998)
    probs[0, 0], probs[0, 1] = 0.9, 1e-9  # (1, V)
    exact = probs[0].double().cumsum(0)  # float64 sums of the float32 probabilities
    picks = [1, 2, 999]
    mids = torch.tensor([[(exact[i] - probs[0, i].double() / 2).item() / exact[-1].item()] for i in picks],
                        dtype=torch.float64)  # (3, 1) u in the middle of each pick's interval
    monkeypatch.setattr(torch, "rand", lambda *a, **k: mids)
    assert draw(probs.repeat(len(picks), 1)).tolist() == picks


def test_other_architectures_fall_back_to_generate(other_tokenizer):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(other_tokenizer), n_embd=32, n_layer=1, n_head=2,
                                       pad_token_id=other_tokenizer.pad_token_id,
                                       eos_token_id=other_tokenizer.eos_token_id)).eval()
    assert not fast.supports(model)
    gens = generate(model, PromptFormat.from_tokenizer(other_tokenizer), task_prompts("tiny-arith", 3), 0.0, 2, 8, 4)
    assert [g.prompt_index for g in gens] == [0, 0, 1, 1, 2, 2]


def test_masked_cache_positions_cannot_poison_attention(monkeypatch):
    """Prompts pre-filled in groups of different widths leave unwritten (masked) cache columns; they get a zero
    attention weight, but 0 * NaN is NaN, so they must hold zeros whatever memory the buffers came from."""
    model, tok = load_causal_lm("zoo:teacher").eval(), load_prompt_format("zoo:teacher")
    prompts = task_prompts("tiny-arith", 9)
    prompts = sorted(prompts, key=lambda p: len(tok.prompt_ids(p)))
    want = [g.token_ids for g in generate(model, tok, prompts, 0.0, 1, 24, 9, engine="hf")]
    empty = torch.empty

    def nan_empty(*size, **kw):  # fresh memory full of NaN, as recycled memory can be
        t = empty(*size, **kw)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)
    got, _, _ = fast.decode_batch(model, [tok.prompt_ids(p) for p in prompts], 0.0, 24, tok.pad_id,
                                  [tok.eos_id], prefill_rows=2)
    assert got == want


def test_grouped_query_attention_repeating_heads_equals_sdpa_gqa():
    """The CUDA path (heads repeated, as transformers' repeat_kv) and the CPU path (SDPA's enable_gqa) agree, on
    a left-padded additive mask: each query head reads key/value head h // groups."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 3, 8, generator=g)  # (B, H, T, D): 3 query heads per key/value head
    k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(2))  # (B, H_kv, S, D)
    allowed = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    allowed[1, :, :, :2] = False  # row 1: two pad positions
    mask = fast.additive(allowed)
    cpu, cuda = (fast.attention(q, k, v, mask, 0.35, repeat_heads=r) for r in (False, True))
    assert torch.allclose(cpu, cuda, atol=1e-6)
    ref = torch.stack([F.scaled_dot_product_attention(q[:, h : h + 1], k[:, h // 3 : h // 3 + 1],
                                                      v[:, h // 3 : h // 3 + 1], attn_mask=mask, scale=0.35)[:, 0]
                       for h in range(6)], 1)  # (2, 6, 3, 8) head by head
    assert torch.allclose(cpu, ref, atol=1e-6)


def test_compaction_keeps_every_running_row_and_moves_only_rows_past_n():
    """Compaction keeps exactly the rows not done, leaves those among the first n in place, moves the others (only
    those: one per done row among the first n) into the done rows' places, and the cache rows follow: row j of the
    compacted cache is old row order[j]."""
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        b = int(torch.randint(1, 40, (1,), generator=g))
        done = torch.rand(b, generator=g) < torch.rand(1, generator=g)
        if done.all():
            continue
        order, holes, movers = fast.compaction(done)
        n = int((~done).sum())
        assert sorted(order.tolist()) == (~done).nonzero()[:, 0].tolist()  # every running row, once
        stay = [j for j in range(n) if not done[j]]
        assert all(order[j] == j for j in stay)  # rows already in place do not move
        assert len(movers) == len(holes) == int(done[:n].sum()) and all(m >= n for m in movers.tolist())
        assert holes.tolist() == done[:n].nonzero()[:, 0].tolist()
        cache = fast.KVCache(2, b, 3, 7, 4, torch.float32, "cpu")
        for buf in cache.k + cache.v:
            buf.copy_(torch.arange(b, dtype=torch.float32)[:, None, None, None] + torch.rand(b, 3, 7, 4, generator=g))
        before = [buf.clone() for buf in cache.k + cache.v]
        cache.fill(holes, movers, n, used=5)
        for old, new in zip(before, cache.k + cache.v):
            assert new.shape[0] == n
            assert torch.equal(new[:, :, :5], old[order][:, :, :5])


def test_greedy_equals_generate_when_many_rows_finish_at_different_steps(monkeypatch):
    """Prompts of mixed lengths and answers at batch 64 trigger several compactions that move rows: greedy outputs
    stay equal."""
    moved = []
    compaction = fast.compaction

    def spy(done):
        out = compaction(done)
        moved.append(len(out[2]))
        return out

    monkeypatch.setattr(fast, "compaction", spy)
    model, tok = load_causal_lm("zoo:teacher").eval(), load_prompt_format("zoo:teacher")
    same_greedy(model, tok, task_prompts("tiny-choice", 64), 64, max_new_tokens=64)
    assert len(moved) >= 2 and sum(moved) > 0  # compacted, and rows past the new batch size moved
