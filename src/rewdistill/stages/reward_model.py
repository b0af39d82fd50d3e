"""Stage 5: train a reward model (scalar head on the SFT student) on labelled teacher + student responses."""
from __future__ import annotations

from rewdistill.io import read_jsonl
from rewdistill.models.load import load_reward_model
from rewdistill.stages.common import Ctx
from rewdistill.stages.sft import encode_pairs
from rewdistill.train.common import save_pretrained
from rewdistill.train.lora import add_lora
from rewdistill.train.reward_model import train_reward_model


def run(ctx: Ctx) -> str:
    rows = read_jsonl(ctx.path("teacher_labelled.jsonl"))
    n_teacher = len(rows)
    if ctx.cfg.reward_model.use_student_samples:
        rows += read_jsonl(ctx.path("student_samples.jsonl"))
    fit_reward_model(ctx, rows, "reward_model")
    pos = sum(r["label"] for r in rows)
    return (f"reward model ({ctx.cfg.reward_model.loss}, from {ctx.cfg.reward_model.init}) on {n_teacher} teacher + {len(rows) - n_teacher} student "
            f"responses ({pos / len(rows):.0%} label 1) -> reward_model/")


def rm_init_path(ctx: Ctx) -> str:
    init = ctx.cfg.reward_model.init
    return {"sft": str(ctx.path("student_sft")), "teacher": ctx.cfg.models.teacher}.get(init, init)


def fit_reward_model(ctx: Ctx, rows: list[dict], out: str, log_name: str = "reward_model") -> None:
    """Train a reward model from the SFT student on labelled rows ({qid, text, label}); save to run_dir/out."""
    cfg = ctx.cfg.reward_model
    prompts = {q["qid"]: q["prompt"] for q in ctx.questions()}
    init = rm_init_path(ctx)
    tok = ctx.tokenizer(init)
    model = load_reward_model(init, ctx.device, "float32", ctx.cfg.models.trust_remote_code)
    model.config.pad_token_id = tok.pad_token_id
    if ctx.cfg.lora.reward_model:
        model = add_lora(model, ctx.cfg.lora, "SEQ_CLS")
    items = [{"qid": r["qid"], "label": r["label"], "ids": p + resp}
             for r, (p, resp) in zip(rows, encode_pairs(tok, prompts, rows))]
    acc = ctx.accelerator(cfg.mixed_precision, cfg.grad_accum)
    model = train_reward_model(
        model, items, tok.pad_token_id, loss=cfg.loss, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        accelerator=acc, seed=ctx.cfg.seed,
        log=ctx.metrics(log_name, acc.is_main_process, checkpoint=out), ckpt=ctx.checkpoint(out, acc),
        max_skips=ctx.cfg.reliability.max_nonfinite_skips,
    )
    save_pretrained(acc, model, tok, ctx.path(out))
