"""SFT and reward-model training speed: rewdistill's loops (random batching as before, question batching) against
TRL's SFTTrainer and RewardTrainer, on the same model, data, batch and sequence lengths.

    pip install trl        # benchmark only; not a dependency of rewdistill
    python benchmarks/train_speed.py RUN_DIR [--questions 300] [--repeats 3] [--stages sft rm]
        [--out results/train_speed_<task>.json]

`rewdistill random` is the loop with the model's full forward (`sft.forward` / `reward_model.forward` full, the
default before 63e1fb0); `, suffix` rows run the last layer and the head only where a response token is predicted
(`models/suffix.py`, the default since; for the scalar head, the last layer at the last token only: the default since
the 2026-12-07 session). `--trainers` keeps only the named rows (and each stage's baselines).

RUN_DIR is a finished run (its teacher_labelled.jsonl and student_samples.jsonl are the data). The same random
subset of its training questions feeds every trainer, one epoch each, fp32 weights, batch 32 (SFT sequences;
reward-model sequences for the pointwise loss, pairs for Bradley-Terry), AdamW; trainers run one after another,
`--repeats` times in turn, and the median is kept. Tokens/s counts every real prompt + response token an epoch trains on
(the same number for every trainer of a row), so padding and shared prompts are the trainers' own business.
- SFT: the student base (`models.student`), loss on the response tokens. TRL gets input_ids and labels
  (-100 on the prompt), pre-tokenised exactly as rewdistill tokenises them. `compiled` is `sft.compile` on (full
  forward, opt-in); its clock includes compiling, which the inductor cache on disk shortens after the first repeat.
- Reward model: the teacher (`reward_model.init` teacher); rewdistill's default (likelihood score, pointwise BCE on
  the labels) and the paper's scalar head with Bradley-Terry pairs, against TRL's RewardTrainer on the same pairs
  (its sequence-classification head on the same teacher).
- `, bf16` rows: bf16 autocast, weights and optimiser fp32 (rewdistill: `mixed_precision bf16`, the `auto` default on
  a CPU with AMX, its attention kept in fp32; TRL: its `bf16=True`, transformers' stock attention). `x_vs_trl` is
  against TRL at fp32, `x_vs_trl_bf16` against TRL's bf16 row.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from provenance import git_commit, teacher_of  # benchmarks/provenance.py

from rewdistill.config_files import load_config
from rewdistill.io import read_jsonl
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model, resolve
from rewdistill.models.precision import keep_cpu_attention_fp32
from rewdistill.models.reward import LikelihoodRM
from rewdistill.train.reward_model import make_pairs, train_reward_model
from rewdistill.train.sft import train_sft

BATCH = 32


def clock(train) -> float:
    t0 = time.perf_counter()
    train()
    return time.perf_counter() - t0


def quiet(row: dict) -> None:
    pass


@contextmanager
def ours_precision(mixed: str):
    """rewdistill's stages under `mixed` precision: bf16 on CPU keeps the attention in fp32 (models/precision.py),
    restored afterwards so that TRL's rows run transformers' stock attention."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    stock = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if mixed == "bf16":
        keep_cpu_attention_fp32()
    try:
        yield Accelerator(cpu=True, mixed_precision=mixed)
    finally:
        ALL_ATTENTION_FUNCTIONS["sdpa"] = stock


def ours_sft(student: str, pairs, pad: int, batching: str, lr: float, compile: bool = False, suffix: bool = False,
             mixed: str = "no"):
    def run():
        model = load_causal_lm(student)
        with ours_precision(mixed) as acc:
            return clock(lambda: train_sft(model, pairs, pad, epochs=1, lr=lr, batch_size=BATCH, warmup_frac=0.05,
                                           weight_decay=0.01, accelerator=acc, seed=0, log=quiet,
                                           batching=batching, compile=compile, suffix=suffix))
    return run


def trl_sft(student: str, pairs, pad: int, lr: float, tok, bf16: bool = False):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict({"input_ids": [p + r for p, r in pairs],
                              "labels": [[-100] * len(p) + r for p, r in pairs]})

    def run():
        with tempfile.TemporaryDirectory() as out:
            args = SFTConfig(output_dir=out, use_cpu=True, per_device_train_batch_size=BATCH, num_train_epochs=1,
                             learning_rate=lr, warmup_steps=0.05, weight_decay=0.01, adam_beta2=0.98,
                             lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=10_000, report_to=[],
                             save_strategy="no", seed=0, bf16=bf16, dataloader_num_workers=0, max_length=None,
                             disable_tqdm=True)
            trainer = SFTTrainer(model=load_causal_lm(student), args=args, train_dataset=data, processing_class=tok)
            return clock(trainer.train)
    return run


def ours_rm(teacher: str, items, pad: int, kind: str, loss: str, batching: str, lr: float, suffix: bool = False,
            mixed: str = "no"):
    def run():
        model = LikelihoodRM(load_causal_lm(teacher)) if kind == "likelihood" else load_reward_model(teacher)
        with ours_precision(mixed) as acc:
            return clock(lambda: train_reward_model(model, items, pad, loss=loss, epochs=1, lr=lr, batch_size=BATCH,
                                                    accelerator=acc, seed=0, log=quiet, batching=batching,
                                                    suffix=suffix))
    return run


def trl_rm(teacher: str, items, bt_pairs, lr: float, tok, bf16: bool = False):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    data = Dataset.from_dict({"chosen_ids": [sum(items[c]["pair"], []) for c, _ in bt_pairs],
                              "rejected_ids": [sum(items[r]["pair"], []) for _, r in bt_pairs]})

    def run():
        with tempfile.TemporaryDirectory() as out:
            args = RewardConfig(output_dir=out, use_cpu=True, per_device_train_batch_size=BATCH, num_train_epochs=1,
                                learning_rate=lr, warmup_steps=0.05, weight_decay=0.01, max_grad_norm=1.0,
                                logging_steps=10_000, report_to=[], save_strategy="no", seed=0, bf16=bf16,
                                dataloader_num_workers=0, max_length=None, disable_tqdm=True)
            trainer = RewardTrainer(model=load_reward_model(teacher), args=args, train_dataset=data,
                                    processing_class=tok)
            return clock(trainer.train)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", nargs="+", choices=["sft", "rm"], default=["sft", "rm"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--trainers", nargs="+", default=None, help="only these trainers (names as in the table; the "
                    "stage's baseline and TRL rows are always kept)")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(str(args.run / "config.yaml"), {})
    prompts = {q["qid"]: q["prompt"] for q in read_jsonl(args.run / "questions.jsonl")}
    qids = sorted(prompts)
    keep = set(random.Random(0).sample(qids, min(args.questions, len(qids))))
    teacher_rows = [r for r in read_jsonl(args.run / "teacher_labelled.jsonl") if r["qid"] in keep]
    student_rows = [r for r in read_jsonl(args.run / "student_samples.jsonl") if r["qid"] in keep]
    student, teacher = resolve(cfg.models.student), resolve(cfg.models.teacher)
    sfmt, tfmt = load_prompt_format(student), load_prompt_format(teacher)
    sft_pairs = sfmt.pairs(prompts, [r for r in teacher_rows if r["label"] == 1 and r["finished"]])
    rm_rows = teacher_rows + student_rows
    items = [{"qid": r["qid"], "label": r["label"], "pair": p} for r, p in zip(rm_rows, tfmt.pairs(prompts, rm_rows))]
    bt_pairs = make_pairs(items, random.Random(0))
    tokens = {"sft": sum(len(p) + len(r) for p, r in sft_pairs),
              "rm_bce": sum(len(it["pair"][0]) + len(it["pair"][1]) for it in items),
              "rm_bt": sum(len(items[i]["pair"][0]) + len(items[i]["pair"][1]) for pr in bt_pairs for i in pr)}
    lr_sft, lr_rm = cfg.sft.lr, cfg.reward_model.lr
    trainers = {
        ("sft", "rewdistill random"): (ours_sft(student, sft_pairs, sfmt.pad_id, "random", lr_sft), "sft"),
        ("sft", "rewdistill random, suffix"): (
            ours_sft(student, sft_pairs, sfmt.pad_id, "random", lr_sft, suffix=True), "sft"),
        ("sft", "rewdistill random, compiled"): (
            ours_sft(student, sft_pairs, sfmt.pad_id, "random", lr_sft, compile=True), "sft"),
        ("sft", "rewdistill question"): (ours_sft(student, sft_pairs, sfmt.pad_id, "question", lr_sft), "sft"),
        ("sft", "TRL SFTTrainer"): (trl_sft(student, sft_pairs, sfmt.pad_id, lr_sft, sfmt.tokenizer), "sft"),
        ("sft", "rewdistill random, suffix, bf16"): (
            ours_sft(student, sft_pairs, sfmt.pad_id, "random", lr_sft, suffix=True, mixed="bf16"), "sft"),
        ("sft", "TRL SFTTrainer, bf16"): (
            trl_sft(student, sft_pairs, sfmt.pad_id, lr_sft, sfmt.tokenizer, bf16=True), "sft"),
        ("rm", "rewdistill likelihood bce random"): (
            ours_rm(teacher, items, tfmt.pad_id, "likelihood", "bce", "random", lr_rm), "rm_bce"),
        ("rm", "rewdistill likelihood bce random, suffix"): (
            ours_rm(teacher, items, tfmt.pad_id, "likelihood", "bce", "random", lr_rm, suffix=True), "rm_bce"),
        ("rm", "rewdistill likelihood bce question"): (
            ours_rm(teacher, items, tfmt.pad_id, "likelihood", "bce", "question", lr_rm), "rm_bce"),
        ("rm", "rewdistill scalar bt random"): (
            ours_rm(teacher, items, tfmt.pad_id, "scalar", "bt", "random", lr_rm), "rm_bt"),
        ("rm", "rewdistill scalar bt question"): (
            ours_rm(teacher, items, tfmt.pad_id, "scalar", "bt", "question", lr_rm), "rm_bt"),
        ("rm", "TRL RewardTrainer (bt)"): (trl_rm(teacher, items, bt_pairs, lr_rm, tfmt.tokenizer), "rm_bt"),
        ("rm", "rewdistill likelihood bce random, suffix, bf16"): (
            ours_rm(teacher, items, tfmt.pad_id, "likelihood", "bce", "random", lr_rm, suffix=True, mixed="bf16"),
            "rm_bce"),
        ("rm", "rewdistill scalar bt random, bf16"): (
            ours_rm(teacher, items, tfmt.pad_id, "scalar", "bt", "random", lr_rm, mixed="bf16"), "rm_bt"),
        ("rm", "rewdistill scalar bt random, suffix"): (
            ours_rm(teacher, items, tfmt.pad_id, "scalar", "bt", "random", lr_rm, suffix=True), "rm_bt"),
        ("rm", "rewdistill scalar bt random, suffix, bf16"): (
            ours_rm(teacher, items, tfmt.pad_id, "scalar", "bt", "random", lr_rm, suffix=True, mixed="bf16"), "rm_bt"),
        ("rm", "TRL RewardTrainer (bt), bf16"): (
            trl_rm(teacher, items, bt_pairs, lr_rm, tfmt.tokenizer, bf16=True), "rm_bt"),
    }
    baselines = {"rewdistill random", "TRL SFTTrainer", "rewdistill likelihood bce random",
                 "rewdistill scalar bt random", "TRL RewardTrainer (bt)"}
    trainers = {k: v for k, v in trainers.items() if k[0] in args.stages
                and (args.trainers is None or k[1] in baselines or k[1] in args.trainers)}
    seconds: dict = {k: [] for k in trainers}
    for rep in range(args.repeats):
        for key, (fn, _) in trainers.items():
            AcceleratorState._reset_state()  # each trainer sets its own precision (accelerate's state is per process)
            GradientState._reset_state()
            seconds[key].append(fn())  # each runner builds its model / trainer untimed, then clocks the training
            print(f"repeat {rep}: {key[1]:40s} {seconds[key][-1]:7.2f} s", flush=True)
    rows = []
    for (stage, name), (_, tok_key) in trainers.items():
        med = statistics.median(seconds[(stage, name)])
        runs = [round(s, 2) for s in seconds[(stage, name)]]
        rows.append({"stage": stage, "trainer": name, "tokens": tokens[tok_key], "median_s": round(med, 2),
                     "tokens_per_s": round(tokens[tok_key] / med), "runs_s": runs})
    for r in rows:  # ratios against the same stage's baselines (same tokens)
        same = {x["trainer"]: x for x in rows if x["stage"] == r["stage"]}
        base = same["rewdistill random"] if r["stage"] == "sft" else same[
            "rewdistill likelihood bce random" if "bce" in r["trainer"] else "rewdistill scalar bt random"]
        trl = same["TRL SFTTrainer"] if r["stage"] == "sft" else same["TRL RewardTrainer (bt)"]
        r["x_vs_rewdistill_random"] = round(base["median_s"] / r["median_s"], 2)
        r["x_vs_trl"] = round(trl["median_s"] / r["median_s"], 2) if "bce" not in r["trainer"] else None
        trl_bf16 = same.get(trl["trainer"] + ", bf16")  # TRL with its own bf16 switch (autocast), when it ran
        if trl_bf16 and "bce" not in r["trainer"]:
            r["x_vs_trl_bf16"] = round(trl_bf16["median_s"] / r["median_s"], 2)
    out = {"date": time.strftime("%Y-%m-%d"), "task": cfg.task.name, "run": str(args.run), "questions": len(keep),
           "sft_sequences": len(sft_pairs), "rm_sequences": len(items), "rm_pairs": len(bt_pairs), "batch": BATCH,
           "commit": git_commit(), "teacher": teacher_of(args.run), "device": "cpu",
           "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "repeats": args.repeats, "rows": rows}
    for r in rows:
        print(f"{r['stage']:4s} {r['trainer']:40s} {r['tokens_per_s']:8d} tok/s  x{r['x_vs_rewdistill_random']} vs "
              f"own random  x{r['x_vs_trl']} vs TRL")
    path = args.out or Path(__file__).resolve().parent / "results" / f"train_speed_{cfg.task.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
