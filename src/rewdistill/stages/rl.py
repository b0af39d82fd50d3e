"""Stage 6: RL on the student (PPO, GRPO or RLOO) with a chosen reward source, KL-anchored to the SFT student.

Round 1 starts from the SFT student; with `rl.rounds > 1` the pipeline repeats student-sample -> reward-model -> rl
and round r starts from round r-1's student (the reference stays the SFT student). A diagnostic watch logs, every
`watch_every` steps, the greedy gold accuracy and reward-model score on a fixed validation subset
(`diagnostics.GoldWatch`): gold read there is logged only, never fed back into training.

Checkpoint choice needs no gold: every `select_every` steps the policy answers the selection questions greedily
and its agreement with the teacher's pseudo-labels is logged (`train.selection`); `rl.select best` keeps the step
that agreed best, `rl.early_stop` stops when agreement keeps falling while the reward rises. `rl_selection.json`
says which step was kept and why.
"""
from __future__ import annotations

import logging

from accelerate.utils import DistributedType
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rewdistill.diagnostics import GoldWatch, auc, divergence_step
from rewdistill.io import read_jsonl, read_jsonl_prefix, write_json
from rewdistill.models.load import load_reward_model
from rewdistill.models.reward import kind_of, load_reward
from rewdistill.stages.common import Ctx
from rewdistill.stages.common_selection import (
    selection_agreement,
    selection_questions,
    selection_teacher_vote,
    vote_questions,
)
from rewdistill.train.checkpoint import peek
from rewdistill.train.common import save_pretrained
from rewdistill.train.lora import add_lora
from rewdistill.train.rewards import (
    local_teacher_logprobs,
    make_hybrid_reward,
    make_match_reward,
    make_rm_reward,
    make_teacher_judge_reward,
    make_teacher_kl_reward,
    make_vote_reward,
    remote_teacher_logprobs,
)
from rewdistill.train.rl_loop import ALGOS, train_rl
from rewdistill.train.rollout import packs_groups
from rewdistill.train.selection import Selection

logger = logging.getLogger("rewdistill")


def frozen_dtype(ctx: Ctx) -> str:
    """The dtype of RL's frozen reference and teacher: on CPU the policy's fp32, whatever models.dtype says (the KL to
    the reference is exact, 0 at the first step); elsewhere models.dtype. The reward model loads in models.dtype
    everywhere, as the evaluation reads it (bf16 on a CPU with AMX: faster scoring, benchmarks/levers.py)."""
    return "float32" if ctx.device == "cpu" else ctx.cfg.models.dtype


def build_reward(ctx: Ctx, rm, rm_fmt, questions: list[dict], labels: dict):
    """The reward function of `rl.reward` over `questions` (rm: the loaded reward model; rm_fmt: None when it reads
    the policy's own tokens, else its prompt format)."""
    cfg, m = ctx.cfg.rl, ctx.cfg.models
    qids = [q["qid"] for q in questions]
    prompts = [q["prompt"] for q in questions]
    packed = packs_groups(cfg)  # a same-tokenizer reward model reads each group in one row

    def extract(text: str, i: int):
        return ctx.extract(text, qids[i])

    pseudo = [labels[q]["pseudo_answer"] if labels[q]["kept"] else None for q in qids]
    if cfg.reward in ("rm", "hybrid"):
        rm_fn = make_rm_reward(rm, rm_fmt, prompts, packed)
        if cfg.reward == "rm":
            return rm_fn
        return make_hybrid_reward(rm_fn, make_match_reward(pseudo, extract), [p is not None for p in pseudo],
                                  cfg.hybrid_weight)
    if cfg.reward == "rm-vote":
        weights = make_rm_reward(rm, rm_fmt, prompts, packed) if cfg.vote_weights == "rm" else None
        return make_vote_reward(weights, extract)
    if cfg.reward == "pseudo-label":
        return make_match_reward(pseudo, extract)
    if cfg.reward == "teacher-judge":
        teacher = ctx.causal_lm(m.teacher, frozen_dtype(ctx)).eval()
        return make_teacher_judge_reward(teacher, ctx.prompt_format(m.teacher), prompts)
    if cfg.reward in ("teacher-kl", "rm+teacher-kl"):
        if m.teacher_backend == "hf":
            teacher_lp = local_teacher_logprobs(ctx.causal_lm(m.teacher, frozen_dtype(ctx)).eval())
        else:  # vllm's prompt_logprobs, or a completions server with echo + logprobs
            teacher_lp = remote_teacher_logprobs(ctx.teacher_sampler(64, purpose="teacher_logprobs"))
        if cfg.reward == "teacher-kl":
            return make_teacher_kl_reward(teacher_lp)
        shares = [labels[q]["vote_share"] for q in qids] if cfg.teacher_kl_gate == "vote-share" else None
        return make_teacher_kl_reward(teacher_lp, make_rm_reward(rm, rm_fmt, prompts, packed), cfg.teacher_kl_coef,
                                      shares, cfg.gate_lo, cfg.gate_hi)
    if cfg.reward == "gold":  # ORACLE upper bound: the one labelled training use of gold answers
        gold = {e.qid: e.answer for e in ctx.task.load("train")}
        return make_match_reward([gold[q] for q in qids], extract)
    raise ValueError(f"unknown rl.reward {cfg.reward!r}")


def preflight(ctx: Ctx) -> None:
    """Refuse, before any stage runs, an rl config that this run's models or labels cannot serve."""
    cfg, m = ctx.cfg.rl, ctx.cfg.models
    if cfg.reward in ("pseudo-label", "hybrid") and ctx.label_method == "judge":
        raise RuntimeError(f"rl.reward {cfg.reward} needs majority-vote pseudo-labels, but this run labels with the "
                           "judge (pseudo_label.method); use rl.reward rm")
    if cfg.reward == "teacher-judge" and m.teacher_backend != "hf":
        raise RuntimeError("rl.reward teacher-judge scores with the teacher's token log-probs, which needs "
                           "models.teacher_backend hf; use rl.reward rm")
    if cfg.reward in ("teacher-kl", "rm+teacher-kl") and m.teacher_backend == "openai" and \
            ctx.cfg.openai.endpoint != "completions":
        raise RuntimeError(f"rl.reward {cfg.reward} asks the teacher server for token log-probs, which needs the "
                           "completions endpoint (echo + logprobs): set openai.endpoint completions")
    if cfg.reward in ("teacher-kl", "rm+teacher-kl") and m.teacher_backend != "openai" and not \
            ctx.prompt_format(m.student).same_tokens(ctx.prompt_format(m.teacher)):
        raise RuntimeError(f"rl.reward {cfg.reward} compares teacher and student token by token, but they use "
                           "different tokenizers; use rl.reward teacher-judge (scores response text) or a teacher "
                           "with the student's tokenizer")
    if cfg.teacher_kl_gate == "vote-share" and ctx.label_method == "judge":
        raise RuntimeError("rl.teacher_kl_gate vote-share needs the teacher's vote shares, but this run labels with "
                           "the judge (pseudo_label.method); use rl.teacher_kl_gate none")


def run(ctx: Ctx) -> str:
    cfg, m, r = ctx.cfg.rl, ctx.cfg.models, ctx.round
    preflight(ctx)
    labels = ctx.labels()
    questions = ctx.questions()  # RL prompts: training questions (no labels needed) ...
    if cfg.reward == "pseudo-label":  # ... except a rule reward needs a pseudo-label
        questions = [q for q in questions if labels[q["qid"]]["kept"]]
    sft_dir, rm_dir = str(ctx.path("student_sft")), str(ctx.round_path("reward_model"))
    start_dir = sft_dir if r == 1 else str(ctx.round_path("student_rl", r - 1))
    fmt = ctx.prompt_format(sft_dir)
    policy = ctx.causal_lm(start_dir, "float32")
    frozen = frozen_dtype(ctx)
    ref = ctx.causal_lm(sft_dir, frozen)
    rm_fmt = ctx.prompt_format(rm_dir)
    rm_reads_policy_tokens = fmt.same_tokens(rm_fmt)
    acc = ctx.accelerator(cfg.mixed_precision)
    main = acc.is_main_process  # the watch runs and logs on the main process only
    watching = bool(cfg.watch_every) and main
    rm = None  # loaded once: the reward (rm, hybrid) and the watch share it
    if cfg.reward in ("rm", "hybrid", "rm+teacher-kl") or (cfg.reward == "rm-vote" and cfg.vote_weights == "rm") \
            or watching:
        rm = load_reward(rm_dir, ctx.device, m.dtype, m.trust_remote_code).eval()
    critic = None
    if ALGOS[cfg.algo].NEEDS_CRITIC:  # PPO's critic starts from a scalar reward model on the policy's tokens
        critic_init = rm_dir if rm_reads_policy_tokens and kind_of(rm_dir) == "scalar" else sft_dir
        critic = load_reward_model(critic_init, ctx.device, "float32", m.trust_remote_code)
    if ctx.cfg.lora.student:
        policy = add_lora(policy, ctx.cfg.lora, "CAUSAL_LM")
    if ctx.cfg.lora.reward_model and critic is not None:
        critic = add_lora(critic, ctx.cfg.lora, "SEQ_CLS")
    log = ctx.metrics("rl", main)  # keeps the rows up to a checkpoint it will resume from
    ckpt = ctx.checkpoint("rl", acc)
    done = peek(ckpt.root, ckpt.tag) or 0  # RL steps finished before a crash (train_rl resumes from them)
    watch = GoldWatch(ctx.task, cfg.watch_n, fmt, rm, rm_fmt, cfg.max_new_tokens, m.sampler) if watching else None
    sel_qs = selection_questions(ctx) if cfg.select_every and main else []
    vote_qs = vote_questions(ctx) if sel_qs and cfg.select_samples else []
    if cfg.select_metric == "teacher_vote" and sel_qs and not vote_qs:
        raise RuntimeError("rl.select_metric teacher_vote samples the policy on the selection questions: set "
                           "rl.select_samples >= 1 (e.g. 4)")
    metric_key = "select_agreement" if cfg.select_metric == "agreement" else "select_teacher_vote"
    sel = Selection(cfg.early_stop)
    agree: list[float] = []  # rollout agreement with the pseudo-labels, per step
    rewards: list[float] = []  # rollout reward per step, for the selection's reward-rises test
    watched: dict[str, list] = {"step": [], "rm": [], "gold": []}
    for row in read_jsonl_prefix(ctx.round_path("rl_metrics.jsonl")) if done else []:  # resume: the history so far
        if "pseudo_label_agreement" in row:
            agree.append(row["pseudo_label_agreement"])
        if "reward" in row:
            rewards.append(row["reward"])
        if "watch_val_gold_accuracy" in row:
            for k, key in [("step", "step"), ("rm", "watch_val_rm_score"), ("gold", "watch_val_gold_accuracy")]:
                watched[k].append(row[key])
        if metric_key in row and sel_qs:
            sel.add(row["step"], row[metric_key], row.get("select_reward"))
    best_file = ctx.run_dir / "checkpoints" / f"{ctx.checkpoint_name('rl')}_best.safetensors"
    best_state: dict | None = None
    if cfg.select_every and cfg.select == "best" and acc.distributed_type in (DistributedType.FSDP,
                                                                              DistributedType.DEEPSPEED):
        raise RuntimeError("rl.select best keeps a copy of the policy's weights, which FSDP / DeepSpeed shard; use "
                           "rl.select last there")
    if cfg.select_every and main and not sel_qs:
        logger.warning("rl.select_every: no selection questions with a pseudo-label (task.n_selection 0, or judge "
                       "labels); the checkpoint is the last step's")
    if sel.steps and best_file.exists():  # resume: the best weights, if they belong to the best check kept
        meta = safe_open(str(best_file), "pt").metadata() or {}
        if meta.get("step") == str(sel.steps[sel.best]):
            best_state = load_file(str(best_file))

    def choose(step: int, policy) -> None:
        """A selection check: greedy agreement with the pseudo-labels; the best policy is kept (rl.select best)."""
        nonlocal best_state
        since = rewards[-cfg.select_every:] if step > first - 1 else []
        reward = sum(since) / len(since) if since else None
        row = {"stage": "rl", "step": step,
               "select_agreement": selection_agreement(ctx, policy, fmt, sel_qs, cfg.max_new_tokens, m.sampler)}
        if vote_qs:
            row["select_teacher_vote"] = selection_teacher_vote(ctx, policy, fmt, vote_qs, cfg.select_samples,
                                                                cfg.max_new_tokens, m.sampler)
        log({**row, "select_reward": reward})
        if sel.add(step, row[metric_key], reward) and cfg.select == "best":
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()}
            best_file.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in best_state.items()}, str(best_file),
                      metadata={"step": str(step)})  # survives a crash

    def look(step: int, policy) -> None:
        gold, score = watch(policy)
        for k, v in [("step", step), ("rm", score), ("gold", gold)]:
            watched[k].append(v)
        log({"stage": "rl", "step": step, "watch_val_gold_accuracy": gold, "watch_val_rm_score": score})

    def on_step(step: int, ro, policy, score=None) -> bool:
        """Share of rollout answers that agree with the teacher's pseudo-label, and how well the reward ranks them
        that way within a prompt (no gold involved); the watch and the selection check when due. Returns True to
        stop early."""
        groups: dict[int, list[tuple[float, int]]] = {}
        for t, i, s in zip(ro.texts, ro.idx, score.tolist() if score is not None else [0.0] * len(ro.idx)):
            lab = labels[questions[i]["qid"]]
            if lab["kept"]:
                groups.setdefault(i, []).append((s, int(ctx.extract(t, questions[i]["qid"]) == lab["pseudo_answer"])))
        hits = [a for g in groups.values() for _, a in g]
        agree.append(sum(hits) / max(1, len(hits)))
        within = [x for x in (auc([s for s, _ in g], [a for _, a in g]) for g in groups.values()) if x is not None]
        log({"stage": "rl", "step": step, "pseudo_label_agreement": agree[-1],
             "reward_agreement_auc": sum(within) / len(within) if within else None})
        if watch and step % cfg.watch_every == 0:
            look(step, policy)
        if sel_qs and step % cfg.select_every == 0:
            choose(step, policy)
            return sel.should_stop()
        return False

    def log_rl(row: dict) -> None:
        if "reward" in row:
            rewards.append(row["reward"])
        log(row)

    first = (r - 1) * cfg.steps + 1  # steps are numbered across rounds
    if watch and not done:
        look(first - 1, policy)
    if sel_qs and not done:
        choose(first - 1, policy)
    reward_fn = build_reward(ctx, rm, None if rm_reads_policy_tokens else rm_fmt, questions, labels)
    policy = train_rl(policy, ref, critic, fmt, [q["prompt"] for q in questions], cfg, reward_fn=reward_fn,
                      accelerator=acc, seed=ctx.cfg.seed, log=log_rl, on_step=on_step, first_step=first, ckpt=ckpt,
                      max_skips=ctx.cfg.reliability.max_nonfinite_skips, engine=m.sampler)
    last = first - 1 + len(agree)  # the last step trained (fewer than rl.steps after an early stop)
    kept = None
    if sel.steps:  # main process only (the others hold no selection)
        spent = [r["rollout_tokens"] for r in read_jsonl(ctx.round_path("rl_metrics.jsonl")) if "rollout_tokens" in r]
        by_budget = cfg.token_budget is not None and bool(spent) and spent[-1] >= cfg.token_budget  # not an early stop
        kept = sel.summary(cfg.select, last, stopped=last < first - 1 + cfg.steps and not by_budget,
                           metric=cfg.select_metric)
        if cfg.select == "best" and kept["kept_step"] != last:
            if best_state is not None:
                acc.unwrap_model(policy).load_state_dict(best_state)
            else:  # its weights were lost with a crash after a later checkpoint
                kept.update(kept_step=last, why=f"the best check's weights (step {kept['best_step']}) were lost in a "
                            "crash; the last step's policy")
        write_json(ctx.round_path("rl_selection.json"), kept)
    out = ctx.round_path("student_rl")
    save_pretrained(acc, policy, fmt.tokenizer, out)
    where = out.relative_to(ctx.run_dir)
    if not agree:
        return f"0 RL steps: {where}/ is the starting student"
    head, tail = agree[:3], agree[-3:]
    summary = (f"{len(agree)} {cfg.algo} steps on reward {cfg.reward}; rollout agreement with pseudo-labels "
               f"{sum(head) / len(head):.0%} -> {sum(tail) / len(tail):.0%}")
    if len(watched["step"]) > 1:
        div = divergence_step(watched["step"], watched["rm"], watched["gold"])
        summary += (f"; watch (validation): gold {watched['gold'][0]:.0%} -> {watched['gold'][-1]:.0%}, RM score "
                    f"{watched['rm'][0]:.2f} -> {watched['rm'][-1]:.2f}"
                    + (f", diverged at step {div}" if div is not None else ", no divergence"))
    if kept:
        summary += f"; kept step {kept['kept_step']} ({kept['why']})"
    return summary + f" -> {where}/"
