"""Stage 5: train a reward model (`reward_model.kind`: likelihood from the teacher by default, or the paper's scalar
head from the SFT student) on labelled teacher + student responses. Round r > 1 (rl.rounds) trains on the teacher's
and every round's student responses into `round<r>/`."""
from __future__ import annotations

import logging

from rewdistill.io import read_jsonl
from rewdistill.labels import distinct
from rewdistill.models.load import load_causal_lm, load_reward_model
from rewdistill.models.reward import LikelihoodRM
from rewdistill.stages.common import Ctx
from rewdistill.train.lora import add_lora
from rewdistill.train.reward_model import save_reward_model, train_reward_model

log = logging.getLogger(__name__)


def init_path(ctx: Ctx) -> str:
    init = ctx.cfg.reward_model.init
    return {"sft": str(ctx.path("student_sft")), "teacher": ctx.cfg.models.teacher}.get(init, init)


def head_tokenizer(fmt, n_embeddings: int):
    """The tokenizer saved with the reward model: the init's, padding on the right, with a pad that is not EOS
    when one exists (`PromptFormat.head_pad_id`), so that `AutoModelForSequenceClassification` on the saved
    directory gives the scores the pipeline trained and used. Training never reads a pad id (attention masks)."""
    import copy

    tokenizer = copy.deepcopy(fmt.tokenizer)
    tokenizer.padding_side = "right"  # transformers' pooling takes the rightmost non-pad token; positions from 0
    pad = fmt.head_pad_id(n_embeddings)
    if pad is None:
        log.warning("reward model: the tokenizer has no special token to pad with but EOS; plain transformers "
                    "will score its sequences one token before their EOS (the pipeline scores the EOS)")
    elif pad != fmt.pad_id:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)
    return tokenizer


def run(ctx: Ctx) -> str:
    cfg = ctx.cfg.reward_model
    rows = read_jsonl(ctx.path("teacher_labelled.jsonl"))
    n_teacher = len(rows)
    if cfg.use_student_samples:
        for r in range(1, ctx.round + 1):
            rows += read_jsonl(ctx.round_path("student_samples.jsonl", r))
    n_rows = len(rows)
    if cfg.duplicates == "drop":  # one copy of each (question, text), teacher rows first: repeats add no ranking
        rows, n_teacher = distinct(rows), len(distinct(rows[:n_teacher]))
    prompts = {q["qid"]: q["prompt"] for q in ctx.questions()}
    init = init_path(ctx)
    fmt = ctx.prompt_format(init)
    if cfg.kind == "likelihood":  # a causal LM judges the answer; scale and bias are calibrated before training
        lm = load_causal_lm(init, ctx.device, "float32", ctx.cfg.models.trust_remote_code)
        tokenizer = fmt.tokenizer
        if ctx.cfg.lora.reward_model:
            lm = add_lora(lm, ctx.cfg.lora, "CAUSAL_LM")
        model = LikelihoodRM(lm)
    else:
        model = load_reward_model(init, ctx.device, "float32", ctx.cfg.models.trust_remote_code)
        tokenizer = head_tokenizer(fmt, model.get_input_embeddings().num_embeddings)
        model.config.pad_token_id = tokenizer.pad_token_id  # what plain transformers' pooling skips (EOS if no other)
        if ctx.cfg.lora.reward_model:
            model = add_lora(model, ctx.cfg.lora, "SEQ_CLS")
    items = [{"qid": row["qid"], "label": row["label"], "pair": pair}
             for row, pair in zip(rows, fmt.pairs(prompts, rows))]
    acc = ctx.accelerator(cfg.mixed_precision, cfg.grad_accum)
    model = train_reward_model(
        model, items, fmt.pad_id, loss=cfg.loss, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        accelerator=acc, seed=ctx.cfg.seed, log=ctx.metrics("reward_model", acc.is_main_process),
        ckpt=ctx.checkpoint("reward_model", acc), max_skips=ctx.cfg.reliability.max_nonfinite_skips,
        batching=cfg.batching, suffix=cfg.forward == "suffix",
    )
    save_reward_model(acc, model, tokenizer, ctx.round_path("reward_model"))
    pos = sum(row["label"] for row in rows)
    dup = f", {n_rows - len(rows)} repeats dropped" * (n_rows > len(rows))
    return (f"{cfg.kind} reward model ({cfg.loss}, from {cfg.init}) on {n_teacher} teacher + "
            f"{len(rows) - n_teacher} student responses ({pos / len(rows):.0%} label 1{dup}) -> "
            f"{ctx.round_path('reward_model').relative_to(ctx.run_dir)}/")
