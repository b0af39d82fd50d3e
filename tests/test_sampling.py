"""The HF sampler: order of outputs, greedy determinism, seeds, EOS handling."""
from pathlib import Path

from rewdistill.models.load import load_causal_lm, load_prompt_format, load_tokenizer, resolve
from rewdistill.sampling.hf import generate
from tests.conftest import save_tiny


def test_generate_order_seeds_and_greedy(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    model, tok = load_causal_lm(path), load_prompt_format(path)
    prompts = ["Question: What is 3 + 4?\nAnswer:", "Question: Mia has 2 pens.\nAnswer:"]
    out = generate(model, tok, prompts, 1.0, n=3, max_new_tokens=6, batch_size=4, seed=1)
    assert [g.prompt_index for g in out] == [0, 0, 0, 1, 1, 1]
    again = generate(model, tok, prompts, 1.0, n=3, max_new_tokens=6, batch_size=4, seed=1)
    assert [g.token_ids for g in out] == [g.token_ids for g in again]
    other = generate(model, tok, prompts, 1.0, n=3, max_new_tokens=6, batch_size=4, seed=2)
    assert [g.token_ids for g in out] != [g.token_ids for g in other]
    for g in out:
        assert len(g.token_ids) <= 6
        assert g.finished == (tok.eos_id in g.token_ids)
    # greedy: the same in any batch composition (left padding is masked out)
    alone = generate(model, tok, prompts[1:], 0.0, max_new_tokens=6)
    both = generate(model, tok, prompts, 0.0, max_new_tokens=6, batch_size=2)
    assert alone[0].token_ids == both[1].token_ids


def test_zoo_names_resolve_to_shipped_directories():
    for name in ["teacher", "student"]:
        assert Path(resolve(f"zoo:{name}"), "config.json").is_file()
        tok = load_tokenizer(f"zoo:{name}")
        assert tok.pad_token_id != tok.eos_token_id
