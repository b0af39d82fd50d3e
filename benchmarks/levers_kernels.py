"""Two more speed levers, measured the way `benchmarks/levers.py` measures its rows (same JSON rows, sides alternating,
median of `--repeats`); neither is in the library, both are recorded so that the next person does not redo them.

    python benchmarks/levers_kernels.py RUN_DIR [--repeats 3] [--steps 100]
        [--out benchmarks/results/levers_kernels_<task>.json]

- `sft compile (suffix)`: SFT optimiser steps as the stage runs them (the student, `sft.forward` suffix, its
  mixed precision, batch 32 of the run's label-1 teacher sequences, AdamW, clipping), the loss eager vs the same loss
  function under `torch.compile(dynamic=True)` (inductor's CPU kernels fuse the norms, rotary and activation
  elementwise work). The compile time is timed apart: the first compiled pass, on an empty inductor cache (a fresh
  `TORCHINDUCTOR_CACHE_DIR`), minus a compiled pass after it. `break_even_steps` = compile seconds / seconds saved
  per step: a stage shorter than that loses time.
- `sft_op_profile`: where an eager step's time goes: torch.profiler over 20 of those steps, the
  operators with the most own CPU time (ms per step, calls per step, share of the profiled time).
- `decode attention, shared prompt`: one decode step's attention where each prompt has n samples (the teacher's
  n_per_temperature = 2, RL's group_size = 8, and n = 1), in the sampler's dtype: SDPA over each row's whole cache
  (the prompt's keys copied into each of its n rows, as the sampler holds them) vs the prompt's keys read once for
  its n queries plus each row's own generated keys, the two merged by their log-sum-exp (flash attention's
  `(out, logsumexp)`); the largest output difference is recorded.
"""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="levers-inductor-"))  # before torch

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from levers import alternate, row, timed  # noqa: E402  benchmarks/levers.py
from provenance import git_commit, teacher_of  # noqa: E402  benchmarks/provenance.py
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.io import read_jsonl  # noqa: E402
from rewdistill.models.family import base_model  # noqa: E402
from rewdistill.models.forward import pad_right  # noqa: E402
from rewdistill.models.load import load_causal_lm, load_prompt_format, pick_dtype, resolve  # noqa: E402
from rewdistill.models.precision import keep_cpu_attention_fp32  # noqa: E402
from rewdistill.models.precision import resolve as resolve_precision  # noqa: E402
from rewdistill.models.suffix import hidden_at  # noqa: E402
from rewdistill.train.sft import sft_optimizer  # noqa: E402


def suffix_loss_core(model, ids, mask, q_at, target, valid):
    """`train.sft.suffix_loss` after its index bookkeeping (done eagerly: `int(lengths.max())` would break a graph).
    ids, mask (B, T); q_at, target, valid (B, R) -> scalar."""
    logits = base_model(model).lm_head(hidden_at(model, ids, mask, q_at)).float()  # (B, R, V)
    logp = torch.gather(F.log_softmax(logits, -1), 2, target[:, :, None]).squeeze(-1)  # (B, R)
    w = valid.float()
    return -(logp * w).sum() / w.sum()


def op_table(prof, steps: int, top: int = 12) -> list[dict]:
    """A torch.profiler run's operators with the most own CPU time, per optimiser step."""
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    return [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 2),
             "calls_per_step": round(e.count / steps, 1), "share": round(e.self_cpu_time_total / total, 3)}
            for e in ops[:top]]


def sft_compile_row(cfg, run: Path, steps: int, repeats: int, profile_steps: int = 20) -> tuple[list[dict], dict]:
    student = resolve(cfg.models.student)
    fmt = load_prompt_format(student)
    prompts = {q["qid"]: q["prompt"] for q in read_jsonl(run / "questions.jsonl")}
    rows = [r for r in read_jsonl(run / "teacher_labelled.jsonl") if r["label"] == 1 and r["finished"]]
    pairs = fmt.pairs(prompts, rows)
    rng = random.Random(0)
    batches = [rng.sample(range(len(pairs)), cfg.sft.batch_size) for _ in range(steps)]
    mixed = resolve_precision(cfg.sft.mixed_precision, "cpu")
    if mixed == "bf16":
        keep_cpu_attention_fp32()

    def inputs(chunk: list[int]):
        ps = [pairs[i] for i in chunk]
        ids, mask = pad_right([p + r for p, r in ps], fmt.pad_id)  # (B, T) each
        starts = torch.tensor([len(p) for p, _ in ps])
        lengths = torch.tensor([len(r) for _, r in ps])
        T, t = ids.shape[1], torch.arange(int(lengths.max()))
        q_at = (starts[:, None] - 1 + t[None]).clamp(0, T - 1)  # (B, R)
        return ids, mask, q_at, ids.gather(1, (q_at + 1).clamp(max=T - 1)), t[None] < lengths[:, None]

    def pass_of(loss_fn, batches=batches, around=nullcontext):
        def go():
            torch.manual_seed(0)
            model = load_causal_lm(student)
            model.train()
            opt = sft_optimizer(model, cfg.sft.lr, cfg.sft.weight_decay)
            with around() as prof:  # the steps only, not the loading
                for chunk in batches:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed == "bf16"):
                        loss = loss_fn(model, *inputs(chunk))
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad()
            return prof
        return go

    pass_of(suffix_loss_core, batches[:profile_steps])()  # warm
    prof = pass_of(suffix_loss_core, batches[:profile_steps], lambda: profile(activities=[ProfilerActivity.CPU]))()
    ops = op_table(prof, profile_steps)
    compiled = torch.compile(suffix_loss_core, dynamic=True)
    first = timed(pass_of(compiled))  # compiles, on the empty cache
    seconds = alternate({"eager": pass_of(suffix_loss_core), "compiled": pass_of(compiled)}, repeats)
    eager_s, comp_s = (statistics.median(seconds[k]) for k in ("eager", "compiled"))
    compile_s = first - comp_s
    saved = (eager_s - comp_s) / steps
    work = f"{steps} SFT steps of {cfg.sft.batch_size} sequences, {mixed} autocast, sft.forward suffix"
    return ops, row("sft compile (suffix)", seconds, work, "eager", compile_s=round(compile_s, 2),
               break_even_steps=round(compile_s / saved) if saved > 0 else None)


def prefix_row(n: int, dtype: torch.dtype, repeats: int, calls: int = 200) -> dict:
    """256 rows of which each prompt holds n; 6 heads, 100 prompt + 30 generated keys of 32 (the teacher's shapes)."""
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    H, D, P, G, rows = 6, 32, 100, 30, 256
    prompts = rows // n
    g = torch.Generator().manual_seed(n)
    q = torch.randn(rows, H, 1, D, generator=g).to(dtype)
    kp, vp = (torch.randn(prompts, H, P, D, generator=g).to(dtype) for _ in range(2))  # one copy per prompt
    kg, vg = (torch.randn(rows, H, G, D, generator=g).to(dtype) for _ in range(2))
    keys = torch.cat([kp.repeat_interleave(n, 0), kg], 2)  # (rows, H, P + G, D): the sampler's cache
    values = torch.cat([vp.repeat_interleave(n, 0), vg], 2)
    mask = torch.zeros(rows, 1, 1, P + G, dtype=dtype)
    mask_g = torch.zeros(rows, 1, 1, G, dtype=dtype)

    def whole():
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (rows, H, 1, D)

    def shared():
        qp = q.view(prompts, n, H, D).transpose(1, 2)  # (prompts, H, n, D): a prompt's n queries together
        op, lp = flash(qp, kp, vp)[:2]  # (prompts, H, n, D), (prompts, H, n)
        og, lg = flash(q, kg, vg, attn_mask=mask_g)[:2]  # (rows, H, 1, D), (rows, H, 1)
        op = op.transpose(1, 2).reshape(rows, H, 1, D)
        lp = lp.transpose(1, 2).reshape(rows, H, 1)
        lse = torch.logaddexp(lp, lg)  # (rows, H, 1)
        return (torch.exp(lp - lse)[..., None] * op + torch.exp(lg - lse)[..., None] * og).to(dtype)

    diff = float((whole().float() - shared().float()).abs().max())
    seconds = alternate({"whole cache": lambda: [whole() for _ in range(calls)],
                         "shared prompt": lambda: [shared() for _ in range(calls)]}, repeats)
    return row(f"decode attention, n = {n}", seconds, f"{calls} calls, {str(dtype)[6:]}, {prompts} prompts x {n}, "
               f"{H} heads, {P} prompt + {G} generated keys of {D}", "whole cache", max_abs_diff=diff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100, help="SFT steps per timed pass")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_config(str(args.run / "config.yaml"), {})
    dtype = pick_dtype(cfg.models.dtype, "cpu")  # the sampler's cache dtype here
    profile, sft_row = sft_compile_row(cfg, args.run, args.steps, args.repeats)
    rows = [sft_row]
    rows += [prefix_row(n, dtype, args.repeats) for n in (2, 8, 1)]
    out = {"task": cfg.task.name, "run": str(args.run), "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
           "teacher": teacher_of(args.run), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "repeats": args.repeats, "rows": rows,
           "sft_op_profile": profile}
    for r in rows:
        print(f"{r['lever']:32s} {r['first']}: {r['median_s'][r['first']]:.3f} s; "
              + ", ".join(f"{k}: {r['median_s'][k]:.3f} s ({x:.2f}x)" for k, x in r["speedup"].items())
              + (f"; compile {r['compile_s']} s, break-even {r['break_even_steps']} steps" if "compile_s" in r else ""))
    path = args.out or Path(__file__).parent / "results" / f"levers_kernels_{cfg.task.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
