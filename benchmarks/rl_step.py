"""RL step time: rewdistill against TRL's GRPOTrainer on the same work.

    pip install trl        # benchmark only; not a dependency of rewdistill
    python benchmarks/rl_step.py [--steps 8] [--out benchmarks/results/rl_step.json]

Same policy (fp32; default the shipped student base, or `--policy RUN_DIR/student_sft`), same reward model
(`--reward-model RUN_DIR/reward_model`, default a sequence classifier initialised from the policy with a seeded
head), same prompts (tiny-arith training questions), 8 prompts x 8 responses per step, at most 64 new
tokens, temperature 1, one optimisation epoch over the 64 responses as one minibatch, KL to the frozen start
model in the loss (TRL beta = rewdistill grpo kl_coef = 0.04), AdamW lr 1e-6. TRL 1.16 has no PPO trainer,
so GRPO is the like-for-like comparison; rewdistill's PPO (which also trains a critic) is timed as well.
Each trainer runs `--steps` steps after one warm-up step; the table shows median seconds per step and the
part spent generating (policy sampling) vs the rest (reference and reward scoring, loss, backward, optimiser).
rewdistill's GRPO runs with random batching (padded rows) and with `rl.batching question` (each group one packed
row: its prompt computed once in the update, the reference and the reward model; here the one minibatch is the
whole rollout, so both see the same responses). `--bf16` adds TRL with its `bf16=True` (autocast), to compare
with TRL's faster setting where bf16 is fast (rewdistill's RL stays fp32 on CPU: docs/tasks-and-backends.md).

`--profile OUT.json`: instead of timing, run TRL's GRPO and rewdistill's GRPO each under cProfile and write their
top functions by own time (the schema of benchmarks/profile_stages.py, one "stage" per trainer; cProfile's overhead
falls mostly on Python-heavy code, so read it next to the timed table, not instead of it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from provenance import git_commit, teacher_of  # benchmarks/provenance.py

from rewdistill.config import RLCfg
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model, load_tokenizer
from rewdistill.tasks import get_task
from rewdistill.train import rollout
from rewdistill.train.rewards import make_rm_reward

PROMPTS, GROUP, MAX_NEW, BETA, LR = 8, 8, 64, 0.04, 1e-6


def reward_model(path):
    torch.manual_seed(0)  # the same random head for both trainers when it is initialised from the policy
    return load_reward_model(path).eval()


class Clock:
    """Wraps a generate function and adds up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t0


def summarise(name, stamps, gen):
    """stamps: times at the end of each step (index 0 = start); gen: generation seconds per step."""
    steps = [b - a for a, b in zip(stamps, stamps[1:])][1:]  # drop the warm-up step
    gen = gen[1:]
    return dict(trainer=name, steps_timed=len(steps), seconds_per_step=round(statistics.median(steps), 3),
                generation_s=round(statistics.median(gen), 3),
                other_s=round(statistics.median([s - g for s, g in zip(steps, gen)]), 3),
                all_steps_s=[round(s, 3) for s in steps])


def run_rewdistill(policy_path, rm_path, prompts, steps, algo, engine, batching="random"):
    from accelerate import Accelerator

    from rewdistill.train.rl_loop import train_rl

    tok = load_prompt_format(policy_path)
    policy, ref = load_causal_lm(policy_path), load_causal_lm(policy_path)
    critic = reward_model(rm_path).float() if algo == "ppo" else None  # critic from the RM, as in the rl stage
    cfg = RLCfg(algo=algo, steps=steps + 1, rollout_batch=PROMPTS, group_size=GROUP, minibatch=PROMPTS * GROUP,
                ppo_epochs=1, lr=LR, kl_coef=BETA, max_new_tokens=MAX_NEW, temperature=1.0, unfinished_penalty=None,
                watch_every=0, batching=batching)
    clock = Clock(rollout.generate)
    rollout.generate = clock
    stamps, gen, seen = [time.perf_counter()], [], [0.0]

    def on_step(step, ro, pol, *rest):  # rest: the selection score (rl_loop.train_rl)
        stamps.append(time.perf_counter())
        gen.append(clock.seconds - seen[0])
        seen[0] = clock.seconds

    try:
        stamps[0] = time.perf_counter()
        train_rl(policy, ref, critic, tok, prompts, cfg,
                 reward_fn=make_rm_reward(reward_model(rm_path), packed=batching == "question"),
                 accelerator=Accelerator(cpu=True), seed=0, log=lambda row: None, on_step=on_step, engine=engine)
    finally:
        rollout.generate = clock.fn
    label = f"rewdistill {algo}" + (" (hf generate)" if engine == "hf" else "") + (
        " (question batching)" if batching == "question" else "")
    return summarise(label, stamps, gen)


def run_trl(policy_path, rm_path, prompts, steps, bf16=False):
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = load_tokenizer(policy_path)
    policy = load_causal_lm(policy_path)
    clock = Clock(policy.generate)
    policy.generate = clock  # TRL samples with unwrapped_model.generate (no vLLM on CPU)
    stamps, gen, seen = [], [], [0.0]

    class Stamp(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())
            gen.append(clock.seconds - seen[0])
            seen[0] = clock.seconds

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, use_cpu=True, per_device_train_batch_size=PROMPTS * GROUP,
                          gradient_accumulation_steps=1, steps_per_generation=1, num_generations=GROUP,
                          max_completion_length=MAX_NEW, num_iterations=1, beta=BETA, learning_rate=LR,
                          max_steps=steps + 1, temperature=1.0, top_k=0, top_p=1.0, logging_steps=1,
                          report_to=[], save_strategy="no", seed=0, bf16=bf16, dataloader_num_workers=0,
                          disable_tqdm=True)
        trainer = GRPOTrainer(model=policy, reward_funcs=reward_model(rm_path), args=args,
                              train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok,
                              reward_processing_classes=tok, callbacks=[Stamp()])
        trainer.train()
    return summarise("TRL GRPOTrainer" + (", bf16" if bf16 else ""), stamps, gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per trainer (after one warm-up step)")
    ap.add_argument("--policy", default="zoo:student", help="policy path, e.g. RUN_DIR/student_sft")
    ap.add_argument("--reward-model", default=None, help="reward model path, e.g. RUN_DIR/reward_model; default: "
                    "a sequence classifier initialised from the policy with a seeded random head")
    ap.add_argument("--out", default="benchmarks/results/rl_step.json", help="JSON output path")
    ap.add_argument("--profile", type=Path, default=None, help="profile the two GRPO trainers into this JSON")
    ap.add_argument("--bf16", action="store_true", help="also time TRL with bf16=True (autocast)")
    args = ap.parse_args()
    rm = args.reward_model or args.policy
    task = get_task("tiny-arith")
    prompts = [task.prompt(e) for e in task.load("train")[:512]]
    import trl

    if args.profile:
        return profile(args, rm, prompts)

    rows = [run_trl(args.policy, rm, prompts, args.steps),
            run_rewdistill(args.policy, rm, prompts, args.steps, "grpo", "fast"),
            run_rewdistill(args.policy, rm, prompts, args.steps, "grpo", "fast", "question"),
            run_rewdistill(args.policy, rm, prompts, args.steps, "grpo", "hf"),
            run_rewdistill(args.policy, rm, prompts, args.steps, "ppo", "fast")]
    if args.bf16:
        rows.append(run_trl(args.policy, rm, prompts, args.steps, bf16=True))
    base = rows[0]["seconds_per_step"]
    for r in rows:
        r["trl_over_this"] = round(base / r["seconds_per_step"], 2)
    print("\n| trainer | s / step (median) | generation s | rest s | TRL ÷ this |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trainer']} | {r['seconds_per_step']:.3f} | {r['generation_s']:.3f} | {r['other_s']:.3f} | "
              f"{r['trl_over_this']:.2f}x |")
    run_dir = Path(args.policy).parent if Path(args.policy).is_dir() else None  # RUN_DIR/student_sft: its teacher
    out = {"date": time.strftime("%Y-%m-%d"), "commit": git_commit(), "teacher": run_dir and teacher_of(run_dir),
           "trl": trl.__version__, "torch": torch.__version__,
           "threads": torch.get_num_threads(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "work": dict(policy=args.policy, reward_model=args.reward_model or f"{args.policy} + random head",
                        prompts_per_step=PROMPTS, group=GROUP, max_new_tokens=MAX_NEW,
                        epochs=1, minibatch=PROMPTS * GROUP, beta=BETA, lr=LR), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


def profile(args, rm, prompts) -> None:
    """Each GRPO trainer's `--steps` (+1 warm-up) steps under cProfile; top functions by own time into JSON."""
    import cProfile

    import trl
    from profile_stages import top_functions  # benchmarks/profile_stages.py

    rows = []
    for name, fn in (("TRL GRPOTrainer", lambda: run_trl(args.policy, rm, prompts, args.steps)),
                     ("rewdistill grpo", lambda: run_rewdistill(args.policy, rm, prompts, args.steps, "grpo", "fast"))):
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(fn)
        seconds = time.perf_counter() - t0
        rows.append({"stage": name, "seconds_profiled": round(seconds, 1), "top": top_functions(prof, seconds, 20)})
        print(f"[profile] {name}: {seconds:.1f} s")
        for r in rows[-1]["top"][:10]:
            print(f"  {r['share']:6.1%}  {r['tottime_s']:7.2f} s  {r['function']}")
    run_dir = Path(args.policy).parent if Path(args.policy).is_dir() else None
    out = {"task": "tiny-arith", "run": str(run_dir or args.policy), "date": time.strftime("%Y-%m-%d"),
           "what": f"TRL's and rewdistill's GRPO on the same work under cProfile, policy `{Path(args.policy).name}`",
           "overrides": [f"{args.steps + 1} steps of {PROMPTS} prompts x {GROUP}, loading included"],
           "commit": git_commit(), "teacher": run_dir and teacher_of(run_dir), "trl": trl.__version__,
           "torch_threads": torch.get_num_threads(), "stages": rows}
    args.profile.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.profile}")


if __name__ == "__main__":
    main()
