"""Build the tiny models shipped in `rewdistill/models/zoo/`: a tokenizer, a teacher and a student base.

Rerun with `python scripts/make_zoo.py all` (see zoo/PROVENANCE.md for the options of the shipped run). Steps:

1. tokenizer: byte-level BPE trained on text of both tiny tasks (digits split).
2. teacher (Llama, ~1.9M params): trained on freshly generated problems of both tasks that appear in
   no task split, and stopped part-way, like a real LLM that is good but imperfect. It first learns
   the gold solution path well (`--warm-steps` in `--warm-styles`, sequential), then three other valid
   paths (`--styles`): a checkpoint taken while the new paths are half-learned writes them by default
   (greedy) and errs in them in varied ways, while some samples still take the well-learned path, so
   majority voting over samples beats greedy decoding, as self-consistency does for real LLMs. The task mix is
   rebalanced after each check so both tasks reach the band together, and the learning rate drops
   once they near it. Checkpoints are judged on a selection set of `--val-n` fresh problems per task
   (in no task split and never trained on; 600 by default, so a checkpoint is placed within ~2 points,
   where the 200-question validation split left ~3.5): among those whose greedy accuracy is in
   [lo, hi] on both tasks and whose maj@8 beats greedy by `min_gain`, the one with the largest
   smaller-of-two gain is kept. `--runs N` (the `sweep` step) trains N teachers side by side on different
   data seeds (`--device cuda` to train on a GPU) and keeps the best qualified checkpoint of all of them by
   the same rule. `--styles` picks the solution paths of the teacher data (more paths, more diverse
   sampled errors, a larger maj@8 gain). `finalize` then measures test accuracy once,
   checks the issue's bounds and writes zoo/README.md.
3. student base (Llama, <= 1/4 of the teacher's params): "pretrained" on the tasks' questions and
   on bare equations, never on a worked solution or an answer line, so it knows the words and some
   arithmetic but not the task (greedy accuracy near zero).

Weights are saved as safetensors with `save_pretrained`; they load with plain transformers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM

from rewdistill.diagnostics import greedy_accuracy, majority_accuracy, sample_k
from rewdistill.models.load import ZOO_DIR
from rewdistill.models.prompt import PromptFormat
from rewdistill.models.tokenizer import build_tokenizer
from rewdistill.sampling.backends import HFSampler
from rewdistill.tasks import base, get_task, tiny_arith, tiny_choice
from rewdistill.train.guard import all_finite
from rewdistill.train.loop import optimizer_step
from rewdistill.train.sft import sft_loss, sft_optimizer

WORK = Path("zoo_work")
EVAL_N = None  # questions per task in accuracy checks (None: the whole split); --micro sets a few
DEVICE = "cpu"  # --device
GEN_BATCH = 200  # --gen-batch: rows per sampling batch
TOKENIZER = None  # --tokenizer (default: WORK / "tokenizer")
SIZES = {"teacher": (192, 3, 6, 768), "student": (128, 2, 4, 384)}  # d, layers, heads, mlp
MICRO_SIZES = {"teacher": (64, 1, 2, 128), "student": (16, 1, 2, 32)}
TEMPS = [0.6, 0.8, 1.0, 1.2]
STYLES = ["grouped", "gains_first", "net"]  # --styles: solution paths of the checked run (see --warm-styles)


def split_questions() -> set[str]:
    seen = set()
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        for split in ["train", "validation", "test"]:
            seen.update(ex.question for ex in task.load(split))
    return seen


def fresh_problems(rng: random.Random, banned: set[str], mix: dict, styles: list[str] | None = None):
    """Endless (prompt, response) pairs of both tasks, none of them in any task split.

    `mix["arith"]` is the share of tiny-arith problems; the caller may change it between draws. Solutions are
    written in one of `styles` (default: --styles) at random.
    """
    styles = styles or STYLES
    arith, choice = get_task("tiny-arith"), get_task("tiny-choice")
    while True:
        if rng.random() < mix["arith"]:
            q, sol, ans = tiny_arith.make_problem(rng, style=rng.choice(styles))
            ex = tiny_arith.Example("x", q, ans, sol)
            task = arith
        else:
            q, sol, ans, opts = tiny_choice.make_problem(rng, style=rng.choice(styles))
            ex = tiny_choice.Example("x", q, ans, sol, opts)
            task = choice
        if q not in banned:
            yield task.prompt(ex), " " + sol


def selection_sets(n: int, banned: set[str]) -> dict[str, list]:
    """`n` fresh problems per task, in no task split and (via `banned`, which this extends) never in the
    training stream: the set the teacher checkpoint is chosen on. Larger than the task's validation split,
    so that a checkpoint's place relative to the bounds is measured within a couple of points."""
    rng, out = random.Random(10_007), {"tiny-arith": [], "tiny-choice": []}
    styles = ("sequential", "grouped")  # solutions are not used here; fixed so the set is the same for any --styles
    while min(len(v) for v in out.values()) < n:
        if len(out["tiny-arith"]) < n:
            q, sol, ans = tiny_arith.make_problem(rng, style=rng.choice(styles))
            if q not in banned:
                banned.add(q)
                out["tiny-arith"].append(tiny_arith.Example(f"sel-a{len(out['tiny-arith'])}", q, ans, sol))
        if len(out["tiny-choice"]) < n:
            q, sol, ans, opts = tiny_choice.make_problem(rng, style=rng.choice(styles))
            if q not in banned:
                banned.add(q)
                out["tiny-choice"].append(tiny_choice.Example(f"sel-c{len(out['tiny-choice'])}", q, ans, sol, opts))
    return out


def pretrain_texts(rng: random.Random, banned: set[str], equations: int = 1):
    """Endless "pretraining" text: question prompts and lines of `equations` bare equations, never a worked
    solution or an answer line."""
    gen = fresh_problems(rng, banned, {"arith": 0.5})
    while True:
        if rng.random() < 0.5:
            prompt, _ = next(gen)
            yield prompt.rsplit("\n", 1)[0], ""  # the question without the "Answer:" line
        else:
            lines = []
            for _ in range(equations):
                a, b = rng.randint(0, 99), rng.randint(0, 20)
                lines.append(f"{a} + {b} = {a + b}" if rng.random() < 0.5 or a < b else f"{a} - {b} = {a - b}")
            yield "\n".join(lines), ""


def encode(tok, pairs) -> list[tuple[list[int], list[int]]]:
    """(prompt, response) texts -> (prompt ids, response ids + EOS); a pair without a response is trained on all
    its tokens (the prompt ids become the response)."""
    encoded = []
    for prompt, resp in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(resp, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] if resp else []
        encoded.append((p, r) if resp else ([], p))
    return encoded


@torch.no_grad()
def accuracy(model, tok, split: str | dict, maj: bool, seed: int = 0, maj_seeds: int = 1) -> dict:
    """Greedy accuracy, and maj@8 over TEMPS x 2 (mean over `maj_seeds` sampling seeds, each kept in
    `maj@8_per_seed`), of `model` on both tiny tasks' `split` (a split name, or examples per task name); measured
    with the evaluate stage's helpers (rewdistill.diagnostics)."""
    model.eval()
    sampler = HFSampler(model, PromptFormat.from_tokenizer(tok, "off"), GEN_BATCH)  # plain-text prompts
    out = {}
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        exs = (task.load(split) if isinstance(split, str) else split[name])[:EVAL_N]
        prompts = [task.prompt(e) for e in exs]
        greedy = sample_k(sampler, prompts, [0.0], 64, seed)  # per prompt: [its greedy Generation]
        out[name] = {"greedy": greedy_accuracy(task, exs, [g[0].text for g in greedy])}
        if maj:
            per_seed = []
            for s in range(maj_seeds):  # temperature i of TEMPS is sampled with seed seed + 1000 * s + i
                k = sample_k(sampler, prompts, TEMPS, 64, seed + 1000 * s, n=2)  # per prompt: 8 Generations
                per_seed.append(majority_accuracy(task, exs, [[g.text for g in gs] for gs in k]))
            out[name]["maj@8"] = sum(per_seed) / len(per_seed)
            if maj_seeds > 1:
                out[name]["maj@8_per_seed"] = per_seed
    model.train()
    return out


def train(model, tok, data, steps: int, lr: float, bs: int, log: str, check=None, check_every: int = 50,
          lr_scale: dict | None = None):
    """`steps` optimiser steps of train/sft.py's loss on `bs` pairs each from the stream `data`: its AdamW (weight
    decay 0.01), 50 warm-up steps, then `lr * lr_scale["x"]`; clipped and skipped like every SFT step
    (train.loop.optimizer_step). `check(step)` may end training (True) or set `lr_scale["x"]`."""
    opt = sft_optimizer(model, lr, weight_decay=0.01)
    accelerator = Accelerator(cpu=DEVICE == "cpu")  # the model is not prepared: it only clips the gradients
    lr_scale = lr_scale if lr_scale is not None else {"x": 1.0}
    t0 = time.time()
    for step in range(1, steps + 1):
        loss = sft_loss(model, encode(tok, [next(data) for _ in range(bs)]), tok.pad_token_id, DEVICE)
        finite = all_finite(loss)
        if finite:
            loss.backward()
        optimizer_step(accelerator, model, opt, lr * lr_scale["x"] * min(1.0, step / 50), skip=not finite)
        if step % 25 == 0:
            print(f"[{log}] step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
        if check is not None and step % check_every == 0 and check(step):
            return step
    return steps


def cmd_tokenizer(args):
    rng = random.Random(1)
    corpus = []
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        corpus += [task.prompt(e) + " " + e.solution for e in task.load("train")]
    corpus += [f"{a} + {b} = {a + b}" for a in range(100) for b in range(21)]
    rng.shuffle(corpus)
    tok = build_tokenizer(corpus)
    tok.save_pretrained(WORK / "tokenizer")
    print("vocab", len(tok))


def load_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER or WORK / "tokenizer")


def llama(tok, d, layers, heads, mlp, tie):
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=mlp, max_position_embeddings=512,
        tie_word_embeddings=tie, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def gain(row) -> float:
    """The smaller maj@8 - greedy of the two tasks in a teacher-history row."""
    return min(r.get("maj@8", 0.0) - r["greedy"] for r in row["val"].values())


def best_qualified(history: list[dict]) -> dict | None:
    """The qualified row with the largest smaller-of-two maj@8 gain (selection set only), or None."""
    rows = [r for r in history if r.get("qualified")]
    return max(rows, key=gain) if rows else None


def cmd_teacher(args):
    torch.manual_seed(args.seed)
    tok = load_tok()
    if args.init:
        model = LlamaForCausalLM.from_pretrained(args.init)
    else:
        model = llama(tok, *SIZES["teacher"], False)
    model.to(DEVICE)
    print("teacher params", sum(p.numel() for p in model.parameters()))
    banned = split_questions()
    chosen_on = selection_sets(args.val_n, banned) if args.val_n else "validation"  # extends `banned`
    first_200 = chosen_on if isinstance(chosen_on, str) else {k: v[:200] for k, v in chosen_on.items()}
    # every training phase skips the task splits and the selection set
    if args.pretrain_steps:  # arithmetic first, like a pretrained LLM, then the worked solutions
        train(model, tok, pretrain_texts(random.Random(4 + args.data_seed), banned, equations=8),
              args.pretrain_steps, 2e-3, 64, "teacher-pretrain")
    if args.warm_steps:  # worked solutions in `--warm-styles` first; then `--styles` (new paths, still weak)
        warm = fresh_problems(random.Random(5 + args.data_seed), banned, {"arith": 0.5}, args.warm_styles.split(","))
        train(model, tok, warm, args.warm_steps, 2e-3, 64, "teacher-warm")
    mix = {"arith": args.arith_share}
    lr_scale = {"x": 1.0}
    data = fresh_problems(random.Random(2 + args.data_seed), banned, mix)
    history = []

    def check(step):
        acc = accuracy(model, tok, first_200, maj=False)  # cheap progress check
        greedy = [acc[n]["greedy"] for n in acc]
        row = {"step": step, "val": acc}
        if min(greedy) >= args.lo - 0.05:
            row["val"] = accuracy(model, tok, chosen_on, maj=True, maj_seeds=args.maj_seeds)
        if min(greedy) >= args.slow_from:
            lr_scale["x"] = args.slow_lr  # move slowly through the band: more checkpoints inside it
        if args.balance:
            # more data to the task that lags, so that both reach the band together
            diff = acc["tiny-choice"]["greedy"] - acc["tiny-arith"]["greedy"]
            mix["arith"] = min(0.9, max(0.1, 0.5 + args.balance_gain * diff))
            row["arith_share_next"] = mix["arith"]
        v = row["val"]
        if all(args.lo <= v[n]["greedy"] <= args.hi for n in v) and gain(row) >= args.min_gain:
            row["qualified"] = True
        history.append(row)
        model.save_pretrained(WORK / f"teacher_ckpt/step{step}")
        print(json.dumps(row), flush=True)
        (WORK / "teacher_history.json").write_text(json.dumps(history, indent=1))
        if args.deadline and time.time() > args.deadline:
            return True  # a sweep's time is up
        # stop `patience` checks after the first qualified one, or once past the window
        first = next((r for r in history if r.get("qualified")), None)
        return first is not None and (step - first["step"] >= args.patience * args.check_every or min(greedy) > args.hi)

    train(model, tok, data, args.max_steps, 2e-3, 64, "teacher", check, args.check_every, lr_scale)
    best = best_qualified(history)  # selection set only: the largest smaller-of-two maj@8 gain
    if best is None:
        raise SystemExit("no teacher checkpoint met the validation rule; change the mix or the window")
    print("teacher: chose step", best["step"], json.dumps(best["val"]))
    shutil.rmtree(WORK / "teacher", ignore_errors=True)
    shutil.copytree(WORK / f"teacher_ckpt/step{best['step']}", WORK / "teacher")
    tok.save_pretrained(WORK / "teacher")


SWEPT = ["lo", "hi", "min_gain", "val_n", "maj_seeds", "check_every", "max_steps", "arith_share", "balance_gain",
         "slow_lr", "slow_from", "patience", "seed", "device", "gen_batch", "styles", "pretrain_steps", "warm_steps",
         "warm_styles"]


def cmd_sweep(args):
    """`--runs` teacher runs side by side, data seeds `--data-seed` + 0, 1, ...; the teacher is the qualified
    checkpoint with the largest smaller-of-two maj@8 gain over all runs (selection set only). Runs stop at
    `--minutes`; a run cut short keeps the checkpoints it qualified."""
    deadline = time.time() + 60 * args.minutes
    procs = []
    with contextlib.ExitStack() as logs:  # each run's log stays open until all runs end
        for i in range(args.runs):
            child = [sys.executable, __file__, "teacher", "--work", str(WORK / f"run{i}"), "--tokenizer",
                     str(TOKENIZER or WORK / "tokenizer"), "--data-seed", str(args.data_seed + i), "--threads", "1",
                     "--deadline", str(deadline)]
            for k in SWEPT:
                child += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            child += ["--balance" if args.balance else "--no-balance"] + (["--micro"] if args.micro else [])
            log = logs.enter_context(open(WORK / f"run{i}.log", "w"))
            procs.append(subprocess.Popen(child, stdout=log, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait()
    summary, best = [], None
    for i in range(args.runs):
        hist_file = WORK / f"run{i}" / "teacher_history.json"
        history = json.loads(hist_file.read_text()) if hist_file.exists() else []
        row = best_qualified(history)
        summary.append({"run": i, "data_seed": args.data_seed + i, "checks": len(history),
                        "last_step": history[-1]["step"] if history else 0,
                        "best": row and {"step": row["step"], "gain": round(gain(row), 4), "val": row["val"]}})
        if row is not None and (best is None or gain(row) > gain(best[1])):
            best = (i, row)
        print(json.dumps(summary[-1]), flush=True)
    (WORK / "sweep.json").write_text(json.dumps({"chosen": best and {"run": best[0], "step": best[1]["step"]},
                                                 "runs": summary}, indent=1))
    if best is None:
        raise SystemExit("no run of the sweep qualified a teacher checkpoint; see run*.log")
    i, row = best
    print(f"teacher: chose run {i} (data seed {args.data_seed + i}) step {row['step']}", json.dumps(row["val"]))
    shutil.rmtree(WORK / "teacher", ignore_errors=True)
    shutil.copytree(WORK / f"run{i}" / f"teacher_ckpt/step{row['step']}", WORK / "teacher")
    load_tok().save_pretrained(WORK / "teacher")


def cmd_student(args):
    torch.manual_seed(1)
    tok = load_tok()
    model = llama(tok, *SIZES["student"], True).to(DEVICE)
    print("student params", sum(p.numel() for p in model.parameters()))
    data = pretrain_texts(random.Random(3), split_questions())
    train(model, tok, data, args.steps, 2e-3, 64, "student")
    model.save_pretrained(WORK / "student")
    tok.save_pretrained(WORK / "student")


def cmd_finalize(args):
    """Measure the chosen checkpoints on the test split, check the bounds, copy into the package."""
    from rewdistill.models.load import load_causal_lm

    tok = load_tok()
    report = {}
    for name in ["teacher", "student"]:
        model = load_causal_lm(str(WORK / name)).to(DEVICE)
        report[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "test": accuracy(model, tok, "test", maj=(name == "teacher"), seed=123, maj_seeds=5),
        }
        print(name, json.dumps(report[name]))
    ratio = report["student"]["params"] / report["teacher"]["params"]
    assert ratio <= 0.25, f"student/teacher params {ratio:.3f} > 1/4"
    dest = Path(args.dest) if args.dest else ZOO_DIR
    if args.micro:  # a smoke run: no accuracy bounds, never into the package
        dest = Path(args.dest or WORK / "zoo_out")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "zoo_report.json").write_text(json.dumps(report, indent=1))
        for name in ["teacher", "student"]:
            shutil.copytree(WORK / name, dest / name, dirs_exist_ok=True)
        print("micro zoo in", dest)
        return
    for n, r in report["teacher"]["test"].items():
        assert 0.45 <= r["greedy"] <= 0.80, f"teacher greedy on {n} out of [45%, 80%]: {r}"
        assert r["maj@8"] - r["greedy"] >= 0.05, f"teacher maj@8 gain on {n} under 5 points: {r}"
    for n, r in report["student"]["test"].items():
        assert r["greedy"] <= 0.15, f"student base greedy on {n} over 15%: {r}"
    for name in ["teacher", "student"]:
        dst = dest / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(WORK / name, dst)
    (dest / "zoo_report.json").write_text(json.dumps(report, indent=1))
    lines = ["# Shipped tiny models", "", "Made by `python scripts/make_zoo.py all`; test-split accuracy below.", "",
             "| model | params | tiny-arith greedy | tiny-arith maj@8 | tiny-choice greedy | tiny-choice maj@8 |",
             "|---|---:|---:|---:|---:|---:|"]
    def cell(t: dict, n: str, k: str) -> str:
        return f"{100 * t[n][k]:.1f}%" if k in t[n] else "-"

    for name, r in report.items():
        t = r["test"]
        lines.append(f"| {name} | {r['params'] / 1e6:.2f}M | {cell(t, 'tiny-arith', 'greedy')} "
                     f"| {cell(t, 'tiny-arith', 'maj@8')} | {cell(t, 'tiny-choice', 'greedy')} "
                     f"| {cell(t, 'tiny-choice', 'maj@8')} |")
    (dest / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("student/teacher params", round(ratio, 3))


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["tokenizer", "teacher", "sweep", "student", "finalize", "all"])
    ap.add_argument("--lo", type=float, default=0.52, help="lowest validation greedy accuracy for the teacher")
    ap.add_argument("--hi", type=float, default=0.75, help="highest validation greedy accuracy for the teacher")
    ap.add_argument("--min-gain", type=float, default=0.07, help="least maj@8 - greedy on validation")
    ap.add_argument("--val-n", type=int, default=600, help="fresh problems per task the teacher is chosen on "
                    "(0: the tasks' validation splits, 200 each)")
    ap.add_argument("--maj-seeds", type=int, default=1, help="sampling seeds averaged in the selection maj@8")
    ap.add_argument("--check-every", type=int, default=15, help="teacher steps between validation checks")
    ap.add_argument("--max-steps", type=int, default=4000, help="teacher step limit")
    ap.add_argument("--steps", type=int, default=800, help="student base steps")
    ap.add_argument("--warm-steps", type=int, default=800,
                    help="teacher steps on worked solutions in --warm-styles before the checked run in --styles")
    ap.add_argument("--warm-styles", default="sequential", help="solution styles of the warm-up steps")
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="teacher steps on questions and bare equations before the worked solutions")
    ap.add_argument("--init", help="continue the teacher from this checkpoint directory")
    ap.add_argument("--arith-share", type=float, default=0.5, help="share of tiny-arith problems in teacher data")
    ap.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                    help="after each check, set the tiny-arith share to 0.5 + gain * (choice acc - arith acc), "
                         "in [0.1, 0.9]")
    ap.add_argument("--balance-gain", type=float, default=2.0, help="slope of the balancing rule")
    ap.add_argument("--slow-lr", type=float, default=0.25, help="learning-rate factor once both tasks near the band")
    ap.add_argument("--slow-from", type=float, default=0.15,
                    help="switch to the slow learning rate once both tasks' validation greedy reach this "
                         "(learning jumps late)")
    ap.add_argument("--patience", type=int, default=4, help="checks to keep going after the first qualified one")
    ap.add_argument("--data-seed", type=int, default=0, help="offset of the teacher data stream's seed")
    ap.add_argument("--seed", type=int, default=0, help="seed of the teacher's initial weights")
    ap.add_argument("--runs", type=int, default=1, help="teacher runs side by side (all: >1 means a sweep)")
    ap.add_argument("--minutes", type=float, default=60.0, help="sweep: time limit of its runs")
    ap.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help="torch device for training and checks (cpu, cuda)")
    ap.add_argument("--gen-batch", type=int, default=200, help="rows per sampling batch in accuracy checks")
    ap.add_argument("--tokenizer", help="tokenizer directory (default: WORK/tokenizer)")
    ap.add_argument("--styles", default="grouped,gains_first,net",
                    help=f"comma-separated solution styles of the teacher data, from {', '.join(base.STYLES)}")
    ap.add_argument("--work", default="zoo_work", help="working directory for checkpoints and logs")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--dest", help="where finalize puts the models (default: the package's zoo/)")
    ap.add_argument("--micro", action="store_true",
                    help="smoke run: tiny models, 8 questions per accuracy check, no bounds, output under --work")
    args = ap.parse_args(argv)
    if args.micro:
        global EVAL_N, SIZES
        EVAL_N, SIZES = 8, MICRO_SIZES
    torch.set_num_threads(args.threads)
    global WORK, DEVICE, GEN_BATCH, TOKENIZER, STYLES
    WORK, DEVICE, GEN_BATCH, TOKENIZER = Path(args.work), args.device, args.gen_batch, args.tokenizer
    STYLES = args.styles.split(",")
    unknown = [st for st in STYLES + args.warm_styles.split(",") if st not in base.STYLES]
    if unknown:
        ap.error(f"--styles: unknown {', '.join(unknown)}; choose from {', '.join(base.STYLES)}")
    WORK.mkdir(parents=True, exist_ok=True)
    teacher = "sweep" if args.runs > 1 else "teacher"
    steps = ["tokenizer", teacher, "student", "finalize"] if args.step == "all" else [args.step]
    for s in steps:
        globals()[f"cmd_{s}"](args)


if __name__ == "__main__":
    main()
