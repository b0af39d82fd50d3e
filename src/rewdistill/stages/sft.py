"""Stage 3: fine-tune the student base on the teacher responses that agree with the pseudo-label."""
from __future__ import annotations

from rewdistill.io import read_jsonl
from rewdistill.models.load import load_causal_lm
from rewdistill.stages.common import Ctx
from rewdistill.train.common import encode_text_pair, save_pretrained
from rewdistill.train.lora import add_lora
from rewdistill.train.sft import train_sft


def encode_pairs(tok, prompts: dict[str, str], rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    """Teacher text -> student tokens: prompt ids, then response ids + EOS (prompt and response apart,
    exactly as the student sees them when it generates)."""
    return [encode_text_pair(tok, prompts[r["qid"]], r["text"]) for r in rows]


def run(ctx: Ctx) -> str:
    cfg, m = ctx.cfg.sft, ctx.cfg.models
    prompts = {q["qid"]: q["prompt"] for q in ctx.questions()}
    rows = [r for r in read_jsonl(ctx.path("teacher_labelled.jsonl")) if r["label"] == 1 and r["finished"]]
    tok = ctx.tokenizer(m.student)
    model = load_causal_lm(m.student, ctx.device, "float32", m.trust_remote_code)
    if ctx.cfg.lora.student:
        model = add_lora(model, ctx.cfg.lora, "CAUSAL_LM")
    acc = ctx.accelerator(cfg.mixed_precision, cfg.grad_accum)
    model = train_sft(
        model, encode_pairs(tok, prompts, rows), tok.pad_token_id,
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        warmup_frac=cfg.warmup_frac, weight_decay=cfg.weight_decay, accelerator=acc, seed=ctx.cfg.seed,
        log=ctx.metrics("sft", acc.is_main_process), ckpt=ctx.checkpoint("sft", acc),
        max_skips=ctx.cfg.reliability.max_nonfinite_skips,
    )
    save_pretrained(acc, model, tok, ctx.path("student_sft"))
    return f"fine-tuned on {len(rows)} label-1 teacher responses -> student_sft/"
