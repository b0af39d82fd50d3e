"""Stage 6: RL on the SFT student (PPO, GRPO or RLOO) with a chosen reward source, KL-anchored to SFT.

With `rl.rounds > 1`, after each round the student re-samples, the new responses are labelled against
the same pseudo-labels, and the reward model is retrained on teacher + all student responses
(`reward_model_round<r>/`) before RL continues. A diagnostic watch logs, every `watch_every` steps,
the greedy gold accuracy and reward-model score on a fixed validation subset: gold read there is
logged only, never fed back into training.
"""
from __future__ import annotations

from rewdistill.io import read_jsonl, read_jsonl_prefix, write_jsonl
from rewdistill.models.load import load_causal_lm, load_reward_model
from rewdistill.rewards import (
    make_hybrid_reward,
    make_match_reward,
    make_rm_reward,
    make_teacher_judge_reward,
    same_tokenizer,
)
from rewdistill.sampling.backends import local_sampler
from rewdistill.sampling.hf import generate
from rewdistill.stages.common import Ctx, label_method, label_rows
from rewdistill.stages.reward_model import fit_reward_model
from rewdistill.stages.teacher_sample import sample_rows
from rewdistill.train.checkpoint import peek
from rewdistill.train.common import encode_text_pair, save_pretrained
from rewdistill.train.lora import add_lora
from rewdistill.train.reward_model import score_sequences
from rewdistill.train.rl_loop import train_rl


def divergence_step(steps: list[int], rm_scores: list[float], gold_acc: list[float], tol: float = 0.03) -> int | None:
    """First watched step where gold accuracy has fallen more than `tol` below its best so far while the
    reward-model score is above its value at that best (reward hacking); None if that never happens."""
    best = 0
    for i in range(1, len(steps)):
        if gold_acc[i] > gold_acc[best]:
            best = i
        elif gold_acc[i] < gold_acc[best] - tol and rm_scores[i] > rm_scores[best]:
            return steps[i]
    return None


def build_reward(ctx: Ctx, source: str, rm_dir: str, rm_tok, rm_reads_policy_tokens: bool, questions: list[dict],
                 labels: dict, by_id: dict):
    cfg, m, task = ctx.cfg.rl, ctx.cfg.models, ctx.task
    exs = [by_id[q["qid"]] for q in questions]

    def extract(text: str, i: int):
        return task.extract(text, exs[i])  # the Example only tells the number of options here

    pseudo = [labels[q["qid"]]["pseudo_answer"] if labels[q["qid"]]["kept"] else None for q in questions]
    if source == "rm" or source == "hybrid":
        rm_fn = make_rm_reward(load_reward_model(rm_dir, ctx.device, m.dtype).eval(),
                               None if rm_reads_policy_tokens else rm_tok, [q["prompt"] for q in questions])
        if source == "rm":
            return rm_fn
        return make_hybrid_reward(rm_fn, make_match_reward(pseudo, extract), [p is not None for p in pseudo],
                                  cfg.hybrid_weight)
    if source == "pseudo-label":
        return make_match_reward(pseudo, extract)
    if source == "teacher-judge":
        teacher = load_causal_lm(m.teacher, ctx.device, m.dtype, m.trust_remote_code).eval()
        return make_teacher_judge_reward(teacher, ctx.tokenizer(m.teacher),
                                         [q["prompt"] for q in questions])
    if source == "gold":  # ORACLE upper bound: the one labelled training use of gold answers
        return make_match_reward([e.answer for e in exs], extract)
    raise ValueError(f"unknown rl.reward {source!r}")


def run(ctx: Ctx) -> str:
    cfg, m = ctx.cfg.rl, ctx.cfg.models
    sft_dir, rm_dir = str(ctx.path("student_sft")), str(ctx.path("reward_model"))
    if cfg.reward in ("pseudo-label", "hybrid") and label_method(ctx.cfg) == "judge":
        raise RuntimeError(f"rl.reward {cfg.reward} needs majority-vote pseudo-labels, but this run labels with the "
                           "judge (pseudo_label.method); use rl.reward rm")
    if cfg.reward == "teacher-judge" and m.teacher_backend != "hf":
        raise RuntimeError("rl.reward teacher-judge scores with the teacher's token log-probs, which needs "
                           "models.teacher_backend hf; use rl.reward rm")
    labels = {l["qid"]: l for l in read_jsonl(ctx.path("labels.jsonl"))}
    questions = ctx.questions()  # RL prompts: training questions (no labels needed) ...
    if cfg.reward == "pseudo-label":  # ... except a rule reward needs a pseudo-label
        questions = [q for q in questions if labels[q["qid"]]["kept"]]
    task = ctx.task
    by_id = {e.qid: e for e in task.load("train")}  # for answer extraction (options), not gold
    tok = ctx.tokenizer(sft_dir)
    policy = load_causal_lm(sft_dir, ctx.device, "float32")
    ref = load_causal_lm(sft_dir, ctx.device, m.dtype)
    rm_tok = ctx.tokenizer(rm_dir)  # every round's reward model starts from the same init, so one tokenizer
    rm_reads_policy_tokens = same_tokenizer(rm_tok, tok)
    # PPO's critic starts from the reward model when it reads the policy's tokens, else from the SFT student
    critic_init = rm_dir if rm_reads_policy_tokens else sft_dir
    critic = load_reward_model(critic_init, ctx.device, "float32") if cfg.algo == "ppo" else None
    if ctx.cfg.lora.student:
        policy = add_lora(policy, ctx.cfg.lora, "CAUSAL_LM")
    if ctx.cfg.lora.reward_model and critic is not None:
        critic = add_lora(critic, ctx.cfg.lora, "SEQ_CLS")
    acc = ctx.accelerator(cfg.mixed_precision)
    log = ctx.metrics("rl", acc.is_main_process)  # keeps the rows up to a checkpoint it will resume from
    ckpt = ctx.checkpoint("rl", acc)
    done = peek(ckpt.root, ckpt.tag) or 0  # RL steps finished before a crash
    agree: list[float] = []
    watched: dict[str, list] = {"step": [], "rm": [], "gold": []}
    if done:  # resume: the policy (and critic) as of step `done`; the loop restores optimisers within a round
        ckpt.load({"policy": policy, **({"critic": critic} if critic is not None else {})}, {})
        for row in read_jsonl_prefix(ctx.path("rl_metrics.jsonl")):
            if "pseudo_label_agreement" in row:
                agree.append(row["pseudo_label_agreement"])
            if "watch_val_gold_accuracy" in row:
                for k, key in [("step", "step"), ("rm", "watch_val_rm_score"), ("gold", "watch_val_gold_accuracy")]:
                    watched[k].append(row[key])
    # diagnostic only: a fixed validation subset with gold answers, and the stage-5 reward model
    main = acc.is_main_process  # the watch runs and logs on the main process only
    val = task.load("validation")[: cfg.watch_n] if cfg.watch_every and main else []
    val_prompts = [task.prompt(e) for e in val]
    watch_rm = load_reward_model(rm_dir, ctx.device, m.dtype).eval() if val else None

    def watch(step: int, policy) -> None:
        gens = generate(policy, tok, val_prompts, 0.0, 1, cfg.max_new_tokens, len(val_prompts),
                        engine=ctx.cfg.models.sampler)
        gold = sum(task.is_correct(g.text, e) for g, e in zip(gens, val)) / len(val)
        seqs = [p + r for p, r in (encode_text_pair(rm_tok, q, g.text) for q, g in zip(val_prompts, gens))]
        rm = sum(score_sequences(watch_rm, seqs, rm_tok.pad_token_id)) / len(seqs)
        for k, v in [("step", step), ("rm", rm), ("gold", gold)]:
            watched[k].append(v)
        log({"stage": "rl", "step": step, "watch_val_gold_accuracy": gold, "watch_val_rm_score": rm})

    def on_step(step: int, ro, policy) -> None:
        """Share of rollout answers that agree with the teacher's pseudo-label (no gold involved)."""
        hits = [task.extract(t, by_id[questions[i]["qid"]]) == labels[questions[i]["qid"]]["pseudo_answer"]
                for t, i in zip(ro.texts, ro.idx) if labels[questions[i]["qid"]]["kept"]]
        agree.append(sum(hits) / max(1, len(hits)))
        log({"stage": "rl", "step": step, "pseudo_label_agreement": agree[-1]})
        if val and step % cfg.watch_every == 0:
            watch(step, policy)

    if val and not done:
        watch(0, policy)
    if cfg.rounds > 1:  # what later rounds retrain the reward model on
        student_rows = read_jsonl(ctx.path("student_samples.jsonl")) if ctx.path("student_samples.jsonl").exists() else []
        kept_qs = [{**q, "_ex": by_id[q["qid"]]} for q in ctx.questions() if labels[q["qid"]]["kept"]]
        teacher_rows = read_jsonl(ctx.path("teacher_labelled.jsonl"))
    for r in range(cfg.rounds):
        if r > 0 and cfg.reward in ("rm", "hybrid") and done > r * cfg.steps:  # this round's RM was trained already
            student_rows += read_jsonl(ctx.path(f"student_samples_round{r}.jsonl"))
            rm_dir = str(ctx.path(f"reward_model_round{r}"))
        elif r > 0 and cfg.reward in ("rm", "hybrid"):  # re-sample with the improved student, relabel, retrain RM
            save_pretrained(acc, policy, tok, ctx.path(f"rl_round{r}"))
            sampler = local_sampler(ctx, str(ctx.path(f"rl_round{r}")), ctx.cfg.student_sample.batch_size)
            new = label_rows(ctx, sample_rows(ctx, sampler, kept_qs, ctx.cfg.student_sample, ctx.cfg.seed + 10 + r,
                                              f"student round {r}"), labels, f"student_round{r}")
            if main:
                write_jsonl(ctx.path(f"student_samples_round{r}.jsonl"), new)
            student_rows += new
            rm_dir = str(ctx.path(f"reward_model_round{r}"))
            fit_reward_model(ctx, teacher_rows + student_rows, f"reward_model_round{r}", f"reward_model_round{r}")
        if done >= (r + 1) * cfg.steps:  # finished before the crash
            continue
        if r > 0:
            policy = acc.unwrap_model(policy)
            acc = ctx.accelerator(cfg.mixed_precision)
        reward_fn = build_reward(ctx, cfg.reward, rm_dir, rm_tok, rm_reads_policy_tokens, questions, labels, by_id)
        policy = train_rl(policy, ref, critic, tok, [q["prompt"] for q in questions], cfg, reward_fn=reward_fn,
                          accelerator=acc, seed=ctx.cfg.seed, log=log, on_step=on_step, first_step=r * cfg.steps + 1,
                          ckpt=ctx.checkpoint("rl", acc), max_skips=ctx.cfg.reliability.max_nonfinite_skips,
                          engine=ctx.cfg.models.sampler)
    save_pretrained(acc, policy, tok, ctx.path("student_rl"))
    if not agree:
        return "0 RL steps: student_rl/ is the SFT student"
    first, last = agree[:3], agree[-3:]
    summary = (f"{cfg.steps * cfg.rounds} {cfg.algo} steps on reward {cfg.reward}; rollout agreement with pseudo-labels "
               f"{sum(first) / len(first):.0%} -> {sum(last) / len(last):.0%}")
    if len(watched["step"]) > 1:
        div = divergence_step(watched["step"], watched["rm"], watched["gold"])
        summary += (f"; watch (validation): gold {watched['gold'][0]:.0%} -> {watched['gold'][-1]:.0%}, RM score "
                    f"{watched['rm'][0]:.2f} -> {watched['rm'][-1]:.2f}"
                    + (f", diverged at step {div}" if div is not None else ", no divergence"))
    return summary + " -> student_rl/"
