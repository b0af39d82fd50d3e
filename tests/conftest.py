"""Shared fixtures: tiny random-init models with locally built tokenizers (nothing is downloaded)."""
from __future__ import annotations

import pytest
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from rewdistill.models.tokenizer import build_tokenizer
from rewdistill.tasks import get_task

MICRO = [
    "--task.n_train", "12", "--task.n_test", "6",
    "--teacher_sample.temperatures", "[0.8, 1.2]", "--teacher_sample.n_per_temperature", "2",
    "--teacher_sample.max_new_tokens", "48", "--student_sample.max_new_tokens", "48",
    "--student_sample.temperatures", "[1.0]",
    "--pseudo_label.min_vote_share", "0.25",
    "--sft.epochs", "1", "--sft.batch_size", "4",
    "--reward_model.epochs", "1", "--reward_model.batch_size", "4",
    "--rl.steps", "2", "--rl.rollout_batch", "4", "--rl.minibatch", "2", "--rl.max_new_tokens", "48",
    "--evaluate.maj_k", "2", "--evaluate.max_new_tokens", "48", "--evaluate.best_of_k", "2",
    "--task.n_selection", "6", "--rl.select_every", "1",
    # the RL recipe these tests were written against (the default before issue 24's): PPO on each response's score.
    # The default recipe (GRPO x 8 on the reward model's vote) has its own micro run (tests/test_rl_variants.py)
    "--rl.algo", "ppo", "--rl.reward", "rm", "--rl.group_size", "1",
]


# fp32 everywhere, whatever `auto` means on this machine (bf16 on a CPU with AMX): for the tests that recompute a
# stage's numbers in fp32 or compare processes / batchings to float rounding
FP32 = ["--models.dtype", "float32", "--sft.mixed_precision", "no", "--reward_model.mixed_precision", "no"]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test starts with accelerate's process-wide state unset: a stage's Accelerator (bf16 under `auto` precision
    on a CPU with AMX) would otherwise set the precision of every later `Accelerator(cpu=True)` in the process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    yield


def _corpus():
    out = []
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        out += [task.prompt(e) + " " + e.solution for e in task.load("train")[:300]]
    return out


@pytest.fixture(scope="session")
def other_tokenizer(tmp_path_factory):
    """A BPE tokenizer unlike the shipped one (smaller vocabulary), saved with save_pretrained."""
    tok = build_tokenizer(_corpus(), vocab_size=300)
    d = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(d)
    return tok


def save_tiny(kind: str, tok, path) -> str:
    """A random-init 1-layer Llama or Qwen2 causal LM with `tok`, saved to `path`."""
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=64, max_position_embeddings=512,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                  tie_word_embeddings=True)
    model = LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_qwen_student(tmp_path_factory, other_tokenizer):
    return save_tiny("qwen2", other_tokenizer, tmp_path_factory.mktemp("qwen_student"))


def shared_data():
    """`../shared/data` next to the repository (or $REWDISTILL_SHARED_DATA); tests skip when it is absent."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("REWDISTILL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root


def need_data(*parts: str):
    """Path to a file or folder of the shared real data, or skip the test with the reason (fail under CI, where
    the data must be there)."""
    import os

    p = shared_data().joinpath(*parts)
    if not p.exists() and os.environ.get("CI"):
        pytest.fail(f"real data {p} is absent and CI is set: CI must provide it (REWDISTILL_SHARED_DATA)")
    if not p.exists():
        pytest.skip(f"real data {p} is absent (set REWDISTILL_SHARED_DATA to the folder holding gsm8k/ and mmlu_pro/)")
    return p
