"""Each shipped config runs end to end with tiny random-init models of its architecture (Qwen2 / Llama, a
local tokenizer with a chat template) on a few real questions from ../shared/data. Nothing is downloaded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

import rewdistill
from rewdistill.cli import main
from rewdistill.config_files import load_config
from rewdistill.models.load import load_prompt_format, load_tokenizer
from rewdistill.models.tokenizer import build_tokenizer
from rewdistill.tasks import get_task
from rewdistill.train.sft import train_sft
from tests.conftest import need_data

CONFIGS = Path(rewdistill.__file__).resolve().parent / "configs"  # shipped inside the package
CHAT = {  # architecture -> (end-of-turn token, chat template), in the style of the real instruct tokenizers
    "qwen2": ("<|im_end|>", "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llama": ("<|eot_id|>", "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
              "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant"
              "<|end_header_id|>\n\n{% endif %}"),
}
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def arch_of(model_id: str) -> str:
    return "qwen2" if "qwen" in model_id.lower() else "llama"


def tiny_model(arch: str, corpus: list[str], path: Path, layers: int) -> str:
    tok = build_tokenizer(corpus, vocab_size=400)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    eot, template = CHAT[arch]
    tok.eos_token, tok.chat_template = eot, template
    common = dict(vocab_size=len(tok), hidden_size=48, num_hidden_layers=layers, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=96, max_position_embeddings=2048,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                  tie_word_embeddings=arch == "qwen2")
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def teach_format(path: str, task, n: int = 24) -> None:
    """A few SFT steps on gold solutions, so that the tiny teacher ends its turn and writes an answer line
    (test scaffolding only: the pipeline under test never reads gold)."""
    from rewdistill.models.load import load_causal_lm

    fmt, model = load_prompt_format(path), load_causal_lm(path)
    exs = task.load("validation")[:n]
    pairs = [fmt.pair_ids(task.prompt(e), (e.solution or f"The answer is ({e.answer}).")[-300:])
             for e in exs]
    model = train_sft(model, pairs, fmt.pad_id, epochs=20, lr=5e-3, batch_size=8, warmup_frac=0.0,
                      weight_decay=0.0, accelerator=Accelerator(cpu=True), seed=0, log=lambda row: None)
    model.save_pretrained(path)


@pytest.mark.parametrize("config,data", [("gsm8k-qwen2.5-7b-to-0.5b.yaml", "gsm8k"),
                                         ("mmlu-pro-llama3.1-8b-to-3.2-1b.yaml", "mmlu_pro/test.jsonl")])
def test_shipped_config_end_to_end_with_tiny_models(tmp_path, config, data):
    data_path = need_data(*data.split("/"))
    cfg = load_config(str(CONFIGS / config), {})
    task = get_task(cfg.task.name, path=str(data_path), n_heldout=cfg.task.n_heldout)
    corpus = [task.prompt(e) + " " + (e.solution or e.answer) for e in task.load("validation")[:200]]
    teacher = tiny_model(arch_of(cfg.models.teacher), corpus, tmp_path / "teacher", layers=2)
    student = tiny_model(arch_of(cfg.models.student), corpus, tmp_path / "student", layers=1)
    teach_format(teacher, task)
    run_dir = tmp_path / "run"
    small = {  # the shipped config, shrunk to seconds on a CPU: same stages, architectures, chat template, data
        "task.path": str(data_path), "task.n_train": 8, "task.n_test": 4, "models.teacher": teacher,
        "models.student": student, "models.device": "cpu",
        "teacher_sample.max_new_tokens": 48, "student_sample.max_new_tokens": 48, "rl.max_new_tokens": 48,
        "evaluate.max_new_tokens": 48, "pseudo_label.min_vote_share": 0.0, "sft.batch_size": 4, "sft.grad_accum": 2,
        "reward_model.batch_size": 4, "reward_model.grad_accum": 2, "rl.steps": 2, "rl.rollout_batch": 4,
        "rl.minibatch": 2, "rl.watch_every": 1, "rl.watch_n": 4, "evaluate.maj_k": 2,
    }
    args = ["run", "--config", str(CONFIGS / config), "--run-dir", str(run_dir)]
    for k, v in small.items():
        args += [f"--{k}", str(v)]
    assert main(args) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert res["task"] == cfg.task.name and res["n_test"] == 4
    assert (set(res["accuracy"]) >= {"teacher_greedy", "teacher_maj_at_k", "student_sft", "student_rl"}
            and "unparsable" in res)
    saved = load_config(str(run_dir / "config.yaml"), {})
    assert saved.models.teacher == teacher and saved.sft.mixed_precision == cfg.sft.mixed_precision
    # the student was trained on chat-formatted prompts: its saved tokenizer keeps the template
    assert load_tokenizer(str(run_dir / "student_rl")).chat_template == CHAT[arch_of(cfg.models.student)][1]
