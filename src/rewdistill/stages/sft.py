"""Stage 3: fine-tune the student base on the teacher responses that agree with the pseudo-label."""
from __future__ import annotations

from rewdistill.io import read_jsonl
from rewdistill.labels import counted
from rewdistill.stages.common import Ctx
from rewdistill.train.common import save_pretrained
from rewdistill.train.loop import compile_wanted
from rewdistill.train.lora import add_lora
from rewdistill.train.sft import train_sft


def run(ctx: Ctx) -> str:
    cfg, m = ctx.cfg.sft, ctx.cfg.models
    prompts = {q["qid"]: q["prompt"] for q in ctx.questions()}
    agree = [r for r in read_jsonl(ctx.path("teacher_labelled.jsonl")) if r["label"] == 1]
    rows = [r for r in agree if r["finished"]]  # a response cut at max_new_tokens would teach the student to ramble
    weights = None
    if cfg.duplicates != "keep":  # drop: one copy of each; weight: one copy whose loss counts as all its repeats
        rows = list(counted(rows).values())
        weights = [r["count"] for r in rows] if cfg.duplicates == "weight" else None
    fmt = ctx.prompt_format(m.student)
    model = ctx.causal_lm(m.student, "float32")
    if ctx.cfg.lora.student:
        model = add_lora(model, ctx.cfg.lora, "CAUSAL_LM")
    acc = ctx.accelerator(cfg.mixed_precision, cfg.grad_accum)
    model = train_sft(
        model, fmt.pairs(prompts, rows), fmt.pad_id,
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        warmup_frac=cfg.warmup_frac, weight_decay=cfg.weight_decay, accelerator=acc, seed=ctx.cfg.seed,
        log=ctx.metrics("sft", acc.is_main_process), ckpt=ctx.checkpoint("sft", acc),
        max_skips=ctx.cfg.reliability.max_nonfinite_skips, batching=cfg.batching, weights=weights,
        compile=compile_wanted(cfg.compile, acc), suffix=cfg.forward == "suffix",
    )
    save_pretrained(acc, model, fmt.tokenizer, ctx.path("student_sft"))
    n_finished = sum(r["finished"] for r in agree)
    cut = f", {len(agree) - n_finished} cut at teacher_sample.max_new_tokens left out" * (len(agree) > n_finished)
    dup = f", {n_finished - len(rows)} repeats {'weighted' if weights else 'dropped'}" * (n_finished > len(rows))
    return f"fine-tuned on {len(rows)} label-1 teacher responses{cut}{dup} -> student_sft/"
