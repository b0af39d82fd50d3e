"""Two more speed levers, measured the way `benchmarks/levers.py` measures its rows (same JSON rows, sides alternating,
median of `--repeats`); neither is in the library, both are recorded so that the next person does not redo them.

    python benchmarks/levers_kernels.py RUN_DIR [--repeats 3] [--steps 100]
        [--out benchmarks/results/levers_kernels_<task>.json]

- `sft_op_profile`: where an eager SFT step's time goes. Steps as the stage runs them (the student, `sft.forward`
  suffix, its mixed precision, batches of `sft.batch_size` of the run's label-1 teacher sequences, AdamW, clipping)
  under torch.profiler, 20 steps: the operators with the most own CPU time (ms per step, calls per step, share).
- `sft compile (suffix)`: `--steps` of those steps with the loss eager vs the same loss function under
  `torch.compile(dynamic=True)` (inductor's CPU kernels fuse the elementwise work), the compiled side under
  `deterministic_if(True)` as `train_sft` runs a compiled forward. The compile time is timed apart: the first
  compiled pass, on an empty inductor cache (a fresh `TORCHINDUCTOR_CACHE_DIR`, removed after), minus the median
  compiled pass after it. `break_even_steps` = compile seconds / seconds saved per step, beside `stage_steps`, the
  optimiser steps of RUN_DIR's SFT stage (`sft_metrics.jsonl`); `loss_diff`: eager vs compiled loss at the first
  step and the largest difference over the steps (the two runs drift apart by rounding).
- `decode attention, shared prompt`: one decode step's attention on the teacher's shapes where each prompt has n
  samples (n = 2: the teacher's n_per_temperature; n = 8: RL's group_size, on the teacher's shapes; n = 1), in the
  sampler's dtype: SDPA over each row's whole cache (the prompt's keys copied into each of its n rows, as the sampler
  holds them) vs the prompt's keys read once for its n queries plus each row's own generated keys, the two merged by
  their log-sum-exp (flash attention's `(out, logsumexp)`); both sides with an (all-zero) padding mask, as a sampler
  would pass; the largest output difference is recorded.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from levers import alternate, results, row, save, timed  # benchmarks/levers.py
from torch.profiler import ProfilerActivity, profile

from rewdistill.config_files import load_config
from rewdistill.io import read_jsonl
from rewdistill.models.family import base_model
from rewdistill.models.forward import pad_right
from rewdistill.models.load import load_causal_lm, load_prompt_format, pick_dtype, resolve
from rewdistill.models.precision import keep_cpu_attention_fp32
from rewdistill.models.precision import resolve as resolve_precision
from rewdistill.models.suffix import hidden_at, response_positions
from rewdistill.train.loop import deterministic_if
from rewdistill.train.sft import sft_optimizer


def suffix_loss_core(model, ids, mask, q_at, target, valid):
    """`train.sft.suffix_loss` after its index bookkeeping (`models.suffix.response_positions`, done eagerly:
    `int(lengths.max())` would break a graph). ids, mask (B, T); q_at, target, valid (B, R) -> scalar."""
    logits = base_model(model).lm_head(hidden_at(model, ids, mask, q_at)).float()  # (B, R, V)
    logp = torch.gather(F.log_softmax(logits, -1), 2, target[:, :, None]).squeeze(-1)  # (B, R)
    w = valid.float()
    return -(logp * w).sum() / w.sum()


class SFTSteps:
    """A run's SFT data, and passes of optimiser steps over fixed random batches of it as the stage takes them."""

    def __init__(self, cfg, run: Path, steps: int):
        self.student = resolve(cfg.models.student)
        self.fmt = load_prompt_format(self.student)
        prompts = {q["qid"]: q["prompt"] for q in read_jsonl(run / "questions.jsonl")}
        rows = [r for r in read_jsonl(run / "teacher_labelled.jsonl") if r["label"] == 1 and r["finished"]]
        self.pairs = self.fmt.pairs(prompts, rows)
        rng = random.Random(0)
        self.batches = [rng.sample(range(len(self.pairs)), cfg.sft.batch_size) for _ in range(steps)]
        self.cfg = cfg
        self.mixed = resolve_precision(cfg.sft.mixed_precision, "cpu")
        if self.mixed == "bf16":
            keep_cpu_attention_fp32()

    def inputs(self, chunk: list[int]):
        """(ids, mask, q_at, target, valid) of a batch of pair indices, as `suffix_loss` builds them."""
        ps = [self.pairs[i] for i in chunk]
        ids, mask = pad_right([p + r for p, r in ps], self.fmt.pad_id)  # (B, T) each
        starts, lengths = torch.tensor([len(p) for p, _ in ps]), torch.tensor([len(r) for _, r in ps])  # (B,)
        return (ids, mask, *response_positions(ids, starts, lengths))

    def pass_of(self, loss_fn, n: int | None = None, around=nullcontext):
        """A function running the first n batches (all: None) from the student base with `loss_fn`, the steps (not
        the loading) inside `around()`; it returns (the losses, what `around()` gave)."""
        def go():
            torch.manual_seed(0)
            model = load_causal_lm(self.student)
            model.train()
            opt = sft_optimizer(model, self.cfg.sft.lr, self.cfg.sft.weight_decay)
            losses = []
            with around() as ctx:
                for chunk in self.batches[:n]:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.mixed == "bf16"):
                        loss = loss_fn(model, *self.inputs(chunk))
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad()
                    losses.append(loss.item())
            return losses, ctx
        return go


def sft_op_profile(sft: SFTSteps, steps: int = 20, top: int = 12) -> list[dict]:
    """The operators with the most own CPU time over `steps` eager steps (after an untimed pass of them)."""
    sft.pass_of(suffix_loss_core, steps)()
    _, prof = sft.pass_of(suffix_loss_core, steps, lambda: profile(activities=[ProfilerActivity.CPU]))()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    return [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 2),
             "calls_per_step": round(e.count / steps, 1), "share": round(e.self_cpu_time_total / total, 3)}
            for e in ops[:top]]


def sft_compile_row(sft: SFTSteps, run: Path, repeats: int) -> dict:
    """Eager vs compiled loss over `sft.batches`, with the compile time apart (the inductor cache empty at first)."""
    compiled_fn = torch.compile(suffix_loss_core, dynamic=True)

    def compiled():
        with deterministic_if(True):
            return sft.pass_of(compiled_fn)()

    first_s = timed(compiled)  # compiles
    seconds = alternate({"eager": sft.pass_of(suffix_loss_core), "compiled": compiled}, repeats)
    eager_loss, comp_loss = sft.pass_of(suffix_loss_core)()[0], compiled()[0]
    steps = len(sft.batches)
    compile_s = first_s - statistics.median(seconds["compiled"])
    saved = (statistics.median(seconds["eager"]) - statistics.median(seconds["compiled"])) / steps
    work = f"{steps} SFT steps of {sft.cfg.sft.batch_size} sequences, {sft.mixed} autocast, sft.forward suffix"
    return row("sft compile (suffix)", seconds, work, "eager", first_compiled_s=round(first_s, 2),
               compile_s=round(compile_s, 2), break_even_steps=round(compile_s / saved) if saved > 0 else None,
               stage_steps=sum(1 for _ in read_jsonl(run / "sft_metrics.jsonl")),
               loss_diff={"first_step": abs(eager_loss[0] - comp_loss[0]),
                          "max_over_steps": max(abs(a - b) for a, b in zip(eager_loss, comp_loss))},
               dynamo_stats=dict(torch._dynamo.utils.counters["stats"]))


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
    mask_p = torch.zeros(prompts, 1, 1, P, dtype=dtype)  # broadcast over a prompt's n queries
    mask_g = torch.zeros(rows, 1, 1, G, dtype=dtype)

    def whole():
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (rows, H, 1, D)

    def shared():
        qp = q.view(prompts, n, H, D).transpose(1, 2)  # (prompts, H, n, D): a prompt's n queries together
        op, lp = flash(qp, kp, vp, attn_mask=mask_p)[:2]  # (prompts, H, n, D), (prompts, H, n)
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
    cache = tempfile.mkdtemp(prefix="levers-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # empty: the first compile pays in full (read when compiling)
    try:
        sft = SFTSteps(cfg, args.run, args.steps)
        ops = sft_op_profile(sft)
        rows = [sft_compile_row(sft, args.run, args.repeats)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    dtype = pick_dtype(cfg.models.dtype, "cpu")  # the sampler's cache dtype here
    rows += [prefix_row(n, dtype, args.repeats) for n in (2, 8, 1)]
    save(results(cfg, args.run, args.repeats, rows, sft_op_profile=ops),
         args.out or Path(__file__).parent / "results" / f"levers_kernels_{cfg.task.name}.json")


if __name__ == "__main__":
    main()
