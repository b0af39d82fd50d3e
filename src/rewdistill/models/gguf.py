"""GGUF checkpoints (llama.cpp / Ollama files) as models.teacher, models.student or reward_model.init.

A `.gguf` file is dequantised by transformers once (`from_pretrained(folder, gguf_file=name)`), rebuilt without its
quantisation entry (transformers refuses to `save_pretrained` a model marked quantised) and saved as a plain
safetensors directory, with the tokenizer and chat template read from the file, in a cache keyed by the file's
sha256: `$REWDISTILL_CACHE/gguf/<name>-<hash>/` (default `~/.cache/rewdistill`). A rerun finds it there; the
configured `models.dtype` applies when the directory is loaded. Needs the `gguf` package (`rewdistill[gguf]`).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

from rewdistill.artifacts import sha256_file

logger = logging.getLogger("rewdistill")


class GGUFError(Exception):
    """A GGUF file could not be used; the message says why and what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("REWDISTILL_CACHE", Path.home() / ".cache" / "rewdistill")) / "gguf"


@functools.lru_cache(maxsize=16)
def _converted(path: str, size: int, mtime: int) -> str:
    src = Path(path)
    out = cache_root() / f"{src.stem}-{sha256_file(src)[:16]}"
    if (out / "config.json").exists():
        return str(out)
    try:
        import gguf  # noqa: F401  transformers reads the file with it
    except ImportError:
        raise GGUFError(f"{src}: reading GGUF files needs the gguf package: pip install 'rewdistill[gguf]'") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info(f"{src.name}: dequantising once into {out} (later runs reuse it)")
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        quantised = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except Exception as e:  # a corrupt or foreign file fails in many ways inside the reader (struct, index, ...)
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise GGUFError(f"{src}: transformers cannot read this GGUF file ({lines[0] if lines else type(e).__name__}); "
                        "check that it is complete and of an architecture transformers can dequantise "
                        "(llama, qwen2, mistral, ...)") from None
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")  # per process: two converting at once never share it
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def gguf_directory(path: str) -> str:
    """The cached plain directory of a .gguf file, converting it the first time."""
    p = Path(path)
    if not p.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    st = p.stat()
    return _converted(str(p.resolve()), st.st_size, st.st_mtime_ns)
