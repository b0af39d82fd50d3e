"""Stage 6: PPO on the SFT student, rewarded by the distilled reward model, KL-anchored to the SFT model."""
from __future__ import annotations

from rewdistill.io import read_jsonl
from rewdistill.models.load import load_causal_lm, load_reward_model, load_tokenizer
from rewdistill.stages.common import Ctx
from rewdistill.train.common import save_pretrained
from rewdistill.train.ppo import train_ppo


def run(ctx: Ctx) -> str:
    cfg = ctx.cfg.rl
    sft_dir, rm_dir = str(ctx.path("student_sft")), str(ctx.path("reward_model"))
    labels = {l["qid"]: l for l in read_jsonl(ctx.path("labels.jsonl"))}
    questions = ctx.questions()  # RL prompts: every training question (no labels needed)
    tok = load_tokenizer(sft_dir)
    policy = load_causal_lm(sft_dir, ctx.device, "float32")
    ref = load_causal_lm(sft_dir, ctx.device, ctx.cfg.models.dtype)
    critic = load_reward_model(rm_dir, ctx.device, "float32")
    reward_model = load_reward_model(rm_dir, ctx.device, ctx.cfg.models.dtype)
    task = ctx.task
    by_id = {e.qid: e for e in task.load("train")}
    acc = ctx.accelerator(cfg.mixed_precision)
    log = ctx.metrics("rl", acc.is_main_process)
    agree: list[float] = []

    def watch(step: int, texts: list[str], idx: list[int]) -> None:
        """Share of rollout answers that agree with the teacher's pseudo-label (no gold involved)."""
        hits = [task.extract(t, by_id[questions[i]["qid"]]) == labels[questions[i]["qid"]]["pseudo_answer"]
                for t, i in zip(texts, idx) if labels[questions[i]["qid"]]["kept"]]
        agree.append(sum(hits) / max(1, len(hits)))
        log({"stage": "rl", "step": step, "pseudo_label_agreement": agree[-1]})

    policy = train_ppo(policy, ref, critic, reward_model, tok, [q["prompt"] for q in questions], cfg,
                       accelerator=acc, seed=ctx.cfg.seed, log=log, on_step=watch)
    save_pretrained(acc, policy, tok, ctx.path("student_rl"))
    first, last = agree[:3], agree[-3:]
    if not agree:
        return "0 PPO steps: student_rl/ is the SFT student"
    return (f"{cfg.steps} PPO steps; rollout agreement with pseudo-labels "
            f"{sum(first) / len(first):.0%} -> {sum(last) / len(last):.0%} -> student_rl/")
