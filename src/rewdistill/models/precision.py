"""Mixed precision for the training stages: what `auto` means, and attention kept in fp32 under CPU autocast.

`auto` is bf16 autocast on a CPU with AMX tiles (Intel Sapphire Rapids and later), in one process, where a bf16
matrix product runs several times faster than fp32 (the 2-core machines of this project:
benchmarks/results/sampling_bf16.json, `matmul_limit_gflops_by_dtype`), and no precision change anywhere else (a
CPU without AMX has no fast bf16 products; the GPU configs ask for bf16 explicitly). Weights, gradients and the
optimiser stay fp32; only the matrix products read bf16 copies (torch.autocast).

CPU autocast also lowers scaled_dot_product_attention to bf16, whose CPU kernel (flash attention) is several
times slower in bf16 than in fp32 at these shapes, its backward most of all (a student SFT step: 92 ms with the
attention in bf16, 61 ms with it in fp32, 71 ms all fp32). So under CPU autocast the attention runs in fp32:
`sdpa` here for the calls rewdistill makes itself, and `keep_cpu_attention_fp32()` for the transformers layers
(it wraps transformers' registered "sdpa" attention once per process; outside CPU autocast the wrapper calls the
original unchanged).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F


def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles (fast bf16 matrix products); False when torch cannot tell."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())


def processes() -> int:
    """How many processes this run has (torchrun and accelerate launch set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def run_device(device: str) -> str:
    """`models.device` as the stages use it: auto -> cuda when available, else cpu."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve(mixed_precision: str, device: str, n_processes: int = 1) -> str:
    """The accelerate mixed-precision mode for a stage: `auto` -> bf16 on a CPU with AMX in a single process (several
    CPU processes under bf16 autocast, DDP or FSDP, are not verified), else no; others as given."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if device == "cpu" and n_processes == 1 and cpu_has_amx() else "no"


def _autocast_on(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw) -> torch.Tensor:
    """F.scaled_dot_product_attention, in fp32 under CPU autocast (the result cast to bf16, as autocast would
    return it); otherwise the plain call."""
    if not _autocast_on(q):
        return F.scaled_dot_product_attention(q, k, v, **kw)
    mask = kw.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kw["attn_mask"] = mask.float()
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kw)
    return out.to(torch.get_autocast_dtype("cpu"))


def keep_cpu_attention_fp32() -> None:
    """Wrap transformers' "sdpa" attention so that it runs in fp32 under CPU autocast (once per process)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if getattr(original, "_rewdistill_fp32", False):
        return

    def sdpa_fp32_on_cpu_autocast(module, query, key, value, attention_mask, **kw):
        if not _autocast_on(query):
            return original(module, query, key, value, attention_mask, **kw)
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast("cpu", enabled=False):
            out, weights = original(module, query.float(), key.float(), value.float(), attention_mask, **kw)
        return out.to(torch.get_autocast_dtype("cpu")), weights

    sdpa_fp32_on_cpu_autocast._rewdistill_fp32 = True
    ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa_fp32_on_cpu_autocast
