"""Loading HF models and tokenizers: hub ids, local directories, and the shipped tiny zoo (`zoo:<name>`)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rewdistill.models.precision import cpu_has_amx
from rewdistill.models.prompt import PromptFormat, PromptFormatError

ZOO_DIR = Path(__file__).parent / "zoo"


class ModelLoadError(Exception):
    """A model or tokenizer could not be loaded; the message says which and what to do."""


HINT = ("check models.teacher / models.student (a hub id, a local save_pretrained directory, a .gguf file, or "
        "zoo:<name>)")


def first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def resolve(path: str) -> str:
    """`zoo:teacher` -> the shipped directory; `x.gguf` -> its dequantised copy (`models.gguf`, converted once);
    anything else is passed to transformers unchanged."""
    if path.endswith(".gguf"):
        from rewdistill.models.gguf import GGUFError, gguf_directory

        try:
            return gguf_directory(path)
        except GGUFError as e:
            raise ModelLoadError(str(e)) from None
    if path.startswith("zoo:"):
        d = ZOO_DIR / path[4:]
        if not (d / "config.json").exists():
            names = sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists())
            raise ModelLoadError(f"no shipped model {path!r}; shipped: {', '.join('zoo:' + n for n in names)}")
        return str(d)
    return path


def pick_dtype(name: str, device: str) -> torch.dtype:
    """`auto` -> bf16 on CUDA and on a CPU with AMX (`models.precision.cpu_has_amx`), fp32 elsewhere; else the
    named dtype."""
    if name == "auto":
        fast_bf16 = device.startswith("cuda") or (device == "cpu" and cpu_has_amx())
        return torch.bfloat16 if fast_bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """A tokenizer with a pad token."""
    try:
        tok = AutoTokenizer.from_pretrained(resolve(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load tokenizer from {path!r}: {first_line(e)}; {HINT}") from e
    if tok.pad_token is None:  # many causal LMs ship without one; reuse EOS, masks keep it harmless
        tok.pad_token = tok.eos_token
    return tok


def load_prompt_format(path: str, trust_remote_code: bool = False, chat_template: str = "auto") -> PromptFormat:
    """The tokenizer at `path` and how prompts are encoded for it (`chat_template`: auto / on / off)."""
    try:
        return PromptFormat.from_tokenizer(load_tokenizer(path, trust_remote_code), chat_template, path)
    except PromptFormatError as e:
        raise ModelLoadError(str(e)) from None


@contextmanager
def whole_weights():
    """Every process loads the whole weights: under an FSDP launch with `fsdp_cpu_ram_efficient_loading`,
    transformers would leave them empty on all but the first process, which suits only the model that FSDP then
    shards (accelerate broadcasts it), not the frozen reference, reward model or teacher each process needs whole."""
    saved = os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = saved


def load_causal_lm(path: str, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
    """A causal LM on `device` in `dtype` (`pick_dtype`; float32 unless asked: the stages pass `models.dtype`)."""
    try:
        with whole_weights():
            model = AutoModelForCausalLM.from_pretrained(
                resolve(path), dtype=pick_dtype(dtype, device), trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model from {path!r}: {first_line(e)}; {HINT}") from e
    return model.to(device)


def load_reward_model(path: str, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
    """A sequence classifier with one output: the reward model (or a causal LM to initialise one)."""
    try:
        with whole_weights():
            model = AutoModelForSequenceClassification.from_pretrained(
                resolve(path), num_labels=1, dtype=pick_dtype(dtype, device), trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load reward model from {path!r}: {first_line(e)}; {HINT}") from e
    if model.config.pad_token_id is None:  # e.g. Llama 3 configs; the head's batched forward needs one
        eos = model.config.eos_token_id
        model.config.pad_token_id = (eos[0] if isinstance(eos, list) else eos) or 0
    return model.to(device)
