"""Speed levers measured side by side: each row times two or more ways of doing the same work, in one process, the
sides alternating; `kept` names the side the defaults use at the commit measured.

    python benchmarks/levers.py RUN_DIR [--repeats 3] [--out benchmarks/results/levers_<task>.json]

RUN_DIR is a finished run; its data feed every row:
- `sft batching`: one SFT pass (the student at the stage's defaults: bf16 autocast where `auto` gives it, suffix
  forward, batch 32) over `--sft-seqs` label-1 teacher sequences, random batches vs `sft.batching length`.
- `sft optimiser`: the same pass, AdamW as the stage builds it (single-tensor) vs `foreach=True` vs `fused=True`.
- `sft threads`: the same pass on 2 torch threads vs 1.
- `rm scoring`: the reward model's scores of rollout-sized packed batches (16 questions x 8 of the run's teacher
  responses, the rl stage's reward call) with fp32 weights vs bf16 weights (`models.dtype` auto on an AMX CPU) vs
  fp32 weights under bf16 autocast (the reward-model stage's training precision); the largest score difference to
  fp32 is recorded.
- `sampler compaction`: the fast sampler on the teacher (bf16 weights, 256 training prompts x 1, T = 1, 64 new
  tokens); when an eighth of the rows are done, every running row's cache copied to the front (before 488f253)
  vs only the rows past the new batch size moved into the finished rows' places (`fast.compaction`).
- `sampler cache`: the same sampling, key / value cache in bf16 vs fp32 (attention in fp32).
- `decode attention`: one decode step's attention on the teacher's cache shape (256 rows, 6 heads, 130 keys of 32
  dims, left padding masked) in the sampler's dtype (`models.dtype`), SDPA vs matmul + softmax + matmul; the largest
  output difference is recorded.
Wall seconds per repeat, the median kept; speed-up = the first side / the other (> 1: the other is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from provenance import git_commit, teacher_of  # benchmarks/provenance.py

import rewdistill.sampling.fast as fast
from rewdistill.config import Config
from rewdistill.config_files import load_config
from rewdistill.io import read_jsonl
from rewdistill.models.load import load_causal_lm, load_prompt_format, pick_dtype, resolve
from rewdistill.models.precision import keep_cpu_attention_fp32
from rewdistill.models.precision import resolve as resolve_precision
from rewdistill.models.reward import load_reward, packed_scores
from rewdistill.sampling.hf import generate
from rewdistill.tasks import task_from_config
from rewdistill.train.rollout import pack_rollout
from rewdistill.train.sft import train_sft


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(sides: dict, repeats: int) -> dict[str, list[float]]:
    """Each side's seconds per repeat, the sides run in turn (a, b, a, b, ...) after one untimed warm-up each."""
    for fn in sides.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for k, fn in sides.items():
            out[k].append(timed(fn))
    return out


def row(lever: str, seconds: dict[str, list[float]], unit_work: str, kept: str, **extra) -> dict:
    first, *others = seconds
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {"lever": lever, "first": first, "kept": kept, "work": unit_work, "seconds": seconds, "median_s": med,
            "speedup": {k: round(med[first] / med[k], 3) for k in others}, **extra}


@contextmanager
def adamw(**kw):
    """torch.optim.AdamW with extra keyword arguments (foreach / fused) wherever the stage builds it."""
    stock = torch.optim.AdamW

    class Patched(stock):
        def __init__(self, *a, **k):
            super().__init__(*a, **{**k, **kw})

    torch.optim.AdamW = Patched
    try:
        yield
    finally:
        torch.optim.AdamW = stock


def sft_rows(cfg, run: Path, n_seqs: int, repeats: int) -> list[dict]:
    student = resolve(cfg.models.student)
    fmt = load_prompt_format(student)
    prompts = {q["qid"]: q["prompt"] for q in read_jsonl(run / "questions.jsonl")}
    rows = [r for r in read_jsonl(run / "teacher_labelled.jsonl") if r["label"] == 1 and r["finished"]]
    random.Random(0).shuffle(rows)  # a sample of every question's lengths, not the first questions'
    pairs = fmt.pairs(prompts, rows[:n_seqs])
    mixed = resolve_precision(cfg.sft.mixed_precision, "cpu")
    if mixed == "bf16":
        keep_cpu_attention_fp32()
    acc = Accelerator(cpu=True, mixed_precision=mixed)

    default = Config().sft.batching  # the code's default, whatever the run used

    def sft(opt_kw: dict | None = None, threads: int | None = None, batching: str = default):
        def go():
            model = load_causal_lm(student)
            before = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                with adamw(**(opt_kw or {})):
                    train_sft(model, pairs, fmt.pad_id, epochs=1, lr=cfg.sft.lr, batch_size=cfg.sft.batch_size,
                              warmup_frac=cfg.sft.warmup_frac, weight_decay=cfg.sft.weight_decay, accelerator=acc,
                              seed=0, log=lambda r: None, suffix=cfg.sft.forward == "suffix", batching=batching)
            finally:
                torch.set_num_threads(before)
        return go

    work = f"{len(pairs)} SFT sequences, one epoch, {mixed} autocast, sft.forward {cfg.sft.forward}"
    batching = alternate({"random": sft(batching="random"), "length": sft(batching="length")}, repeats)
    work_b = f"{work}, sft.batching {default}"
    opt = alternate({"single-tensor": sft(), "foreach": sft({"foreach": True}), "fused": sft({"fused": True})},
                    repeats)
    threads = alternate({"2 threads": sft(threads=2), "1 thread": sft(threads=1)}, repeats)
    return [row("sft batching", batching, work, default),
            row("sft optimiser", opt, work_b, "single-tensor"), row("sft threads", threads, work_b, "2 threads")]


def rm_row(cfg, run: Path, repeats: int) -> dict:
    fmt = load_prompt_format(resolve(cfg.models.student))
    rms = {dtype: load_reward(str(run / "reward_model"), "cpu", dtype).eval() for dtype in ("float32", "bfloat16")}
    prompts = {q["qid"]: q["prompt"] for q in read_jsonl(run / "questions.jsonl")}
    by_q: dict[str, list[dict]] = {}
    for r in read_jsonl(run / "teacher_labelled.jsonl"):
        by_q.setdefault(r["qid"], []).append(r)
    groups = [g[:8] for g in by_q.values() if len(g) >= 8][:48]
    batches = []
    for lo in range(0, len(groups), 16):  # 16 questions x 8 responses: one rl step's reward call
        chunk = [fmt.pair_ids(prompts[r["qid"]], r["text"]) for g in groups[lo : lo + 16] for r in g]
        batches.append(pack_rollout([p for p, _ in chunk], [t for _, t in chunk]))
    keep_cpu_attention_fp32()

    @torch.no_grad()
    def score(dtype: str, autocast: bool = False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return torch.cat([packed_scores(rms[dtype], b).float() for b in batches])

    fp32 = score("float32")
    diff = {"bf16 weights": float((score("bfloat16") - fp32).abs().max()),
            "fp32 weights, bf16 autocast": float((score("float32", True) - fp32).abs().max())}
    seconds = alternate({"fp32 weights": lambda: score("float32"), "bf16 weights": lambda: score("bfloat16"),
                         "fp32 weights, bf16 autocast": lambda: score("float32", True)}, repeats)
    kept = "bf16 weights" if pick_dtype(cfg.models.dtype, "cpu") == torch.bfloat16 else "fp32 weights"
    return row("rm scoring", seconds, f"{len(batches)} packed batches of 16 questions x 8 teacher responses", kept,
               max_abs_score_diff={k: round(v, 5) for k, v in diff.items()})


@contextmanager
def copy_every_row():
    """The compaction before 488f253: every running row's cache gathered into the front rows (a slice copy), not only
    the movers."""
    compaction, fill = fast.compaction, fast.KVCache.fill

    def everyone(done):
        keep = (~done).nonzero()[:, 0]  # (n,)
        return keep, None, keep  # the rows in order, all of them copied

    def gather_to_front(self, holes, rows, n, used):
        for buffers in (self.k, self.v):
            for i, buf in enumerate(buffers):
                buf[:n, :, :used] = buf[rows, :, :used]  # the right side is gathered first: no overlap
                buffers[i] = buf[:n]

    fast.compaction, fast.KVCache.fill = everyone, gather_to_front
    try:
        yield
    finally:
        fast.compaction, fast.KVCache.fill = compaction, fill


@contextmanager
def fp32_cache():
    """The fast sampler with its key/value cache in fp32 and the attention on fp32 queries (output cast back)."""
    init, attention = fast.KVCache.__init__, fast.attention

    def init32(self, n_layers, B, H, L, D, dtype, device):
        init(self, n_layers, B, H, L, D, torch.float32, device)

    def attention32(q, keys, values, mask, scale, repeat_heads):
        return attention(q.float(), keys, values, mask, scale, repeat_heads).to(q.dtype)

    fast.KVCache.__init__, fast.attention = init32, attention32
    try:
        yield
    finally:
        fast.KVCache.__init__, fast.attention = init, attention


def sampler_rows(cfg, repeats: int) -> list[dict]:
    teacher = resolve(cfg.models.teacher)
    model = load_causal_lm(teacher, "cpu", "bfloat16")
    fmt = load_prompt_format(teacher)
    task = task_from_config(cfg.task)
    prompts = [task.prompt(e) for e in task.load("train")[:256]]

    def sample(patch=None):
        def go():
            with patch() if patch else nullcontext():
                generate(model, fmt, prompts, 1.0, 1, 64, 256, engine="fast")
        return go

    work = "teacher in bf16, 256 prompts x 1, T = 1, 64 new tokens"
    compaction = alternate({"copy every running row": sample(copy_every_row), "copy the movers": sample()}, repeats)
    cache = alternate({"bf16 cache": sample(), "fp32 cache": sample(fp32_cache)}, repeats)
    return [row("sampler compaction", compaction, work, "copy the movers"),
            row("sampler cache", cache, work, "bf16 cache")]


def attention_row(cfg, repeats: int) -> dict:
    dtype = pick_dtype(cfg.models.dtype, "cpu")  # the sampler's cache dtype here
    g = torch.Generator().manual_seed(0)
    b, H, L, end, D = 256, 6, 170, 130, 32
    keys, values = (torch.randn(b, H, L, D, generator=g).to(dtype) for _ in range(2))
    q = torch.randn(b, H, 1, D, generator=g).to(dtype)
    mask = torch.zeros(b, 1, 1, L, dtype=dtype)
    mask[:, :, :, :20] = float("-inf")  # left padding
    k, v, m, scale = keys[:, :, :end], values[:, :, :end], mask[..., :end], D ** -0.5

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)

    def manual():
        s = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).add_(m)  # (b, H, 1, end)
        return torch.matmul(s.softmax(-1), v)  # (b, H, 1, D)

    diff = float((sdpa() - manual()).abs().max())
    calls = 200
    seconds = alternate({"sdpa": lambda: [sdpa() for _ in range(calls)],
                         "matmul + softmax": lambda: [manual() for _ in range(calls)]}, repeats)
    return row("decode attention", seconds, f"{calls} calls, {str(dtype)[6:]}, q (256, 6, 1, 32), cache (256, 6, 130, "
               "32) of 170",
               "sdpa", max_abs_diff=diff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sft-seqs", type=int, default=3200, help="SFT sequences per timed pass (100 steps of 32)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(str(args.run / "config.yaml"), {})
    rows = sft_rows(cfg, args.run, args.sft_seqs, args.repeats)
    rows += [rm_row(cfg, args.run, args.repeats), *sampler_rows(cfg, args.repeats), attention_row(cfg, args.repeats)]
    save(results(cfg, args.run, args.repeats, rows), args.out or Path(__file__).parent / "results" /
         f"levers_{cfg.task.name}.json")


def results(cfg, run: Path, repeats: int, rows: list[dict], **extra) -> dict:
    """A levers JSON: where and on what the rows were measured, the rows (each printed), and `extra`."""
    for r in rows:
        print(f"{r['lever']:32s} {r['first']}: {r['median_s'][r['first']]:.3f} s; "
              + ", ".join(f"{k}: {r['median_s'][k]:.3f} s ({x:.2f}x)" for k, x in r["speedup"].items()))
    return {"task": cfg.task.name, "run": str(run), "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
            "teacher": teacher_of(run), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "repeats": repeats, "rows": rows, **extra}


def save(out: dict, path: Path) -> None:
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
