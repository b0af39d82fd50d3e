"""The RL loop shared by PPO, GRPO and RLOO: rollout -> reward -> advantages -> clipped updates.

Each algorithm module (`ppo`, `grpo`, `rloo`) exposes one contract, `advantages(rollout, score, kl, kl_coef, cfg,
critic) -> Advantages`, plus two flags (NEEDS_CRITIC, KL_IN_LOSS); `ALGOS` is the only dispatch. The rollout,
the per-token KL (computed once), the policy and critic updates and the logging are shared.

How this PPO departs from the textbook (Schulman et al. 2017), as RLHF implementations do:
- one episode is one response and the reward is terminal: the score arrives at the last response token only,
  except a dense reward source (teacher-kl: `Scores.dense`), whose per-token rewards enter GAE where they arise
  (GRPO and RLOO sum them into the response's score);
- the KL to the reference (the SFT student) is paid inside the reward, `-kl_coef * KL` on every token (GRPO puts
  a k3 KL in the loss instead; RLOO subtracts the summed KL from the sequence reward);
- the critic is a separate model initialised from the reward model (from the SFT student when the reward model
  reads other tokens), not a value head on the policy;
- rewards may be whitened over the rollout (`rl.whiten_rewards`) and advantages are always whitened;
- no entropy bonus (entropy is logged only); gradients are clipped to norm 1.0 for policy and critic;
- the KL coefficient may follow Ziegler et al.'s adaptive controller (`rl.kl_target`); a response cut by the
  length limit may get a fixed penalty instead of its score (`rl.unfinished_penalty`);
- a step whose reward, advantages or losses are not finite is skipped and counted (`Guard`), not applied.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rewdistill.algo.advantages import adaptive_kl_coef, mixed_groups
from rewdistill.algo.losses import explained_variance, kl_per_token
from rewdistill.faults import kill_point
from rewdistill.launch import is_fsdp, sharding_note
from rewdistill.models.prompt import PromptFormat
from rewdistill.train import grpo, ppo, raft, rloo
from rewdistill.train.checkpoint import peek
from rewdistill.train.common import all_agree, global_mean, refresh_whole, shard_of
from rewdistill.train.guard import Guard, all_finite
from rewdistill.train.rollout import PromptCycle, Rollout, Scores, final_scores, packs_groups, sample_rollout
from rewdistill.train.updates import actor_update, critic_update

ALGOS = {"ppo": ppo, "grpo": grpo, "rloo": rloo, "raft": raft}
RewardFn = Callable[[Rollout], "torch.Tensor | Scores"]  # rollout -> (B,) raw scores, or Scores with a dense part


def train_rl(
    policy,
    ref,
    critic,  # a sequence-classification model for PPO's values; None for grpo / rloo
    fmt: PromptFormat,
    prompts: list[str],
    cfg,  # RLCfg
    *,
    reward_fn: RewardFn,
    accelerator: Accelerator,
    seed: int,
    log: Callable[[dict], None],
    on_step: Callable[[int, Rollout, object, torch.Tensor], bool | None] | None = None,  # (step, rollout, policy,
    # (B,) scores) -> stop?
    first_step: int = 1,
    ckpt=None,  # train.checkpoint.Checkpoint: resume from it when it lies in this call's steps; save every N
    max_skips: int = 10,
    engine: str = "fast",  # sampling engine for rollouts (models.sampler)
):
    """Run `cfg.steps` iterations of `cfg.algo`; returns the prepared (possibly wrapped) policy."""
    algo = ALGOS[cfg.algo]
    G = cfg.group_size
    if not algo.NEEDS_CRITIC and G < 2:
        raise ValueError(f"rl.algo {cfg.algo} compares responses to the same prompt: set rl.group_size >= 2")
    world = accelerator.num_processes
    if cfg.filter_groups and world > 1:
        raise RuntimeError("rl.filter_groups keeps a different number of responses on each process, which DDP cannot "
                           "synchronise; run it on one process or set rl.filter_groups false")
    if cfg.rollout_batch % world or cfg.minibatch % world:
        raise RuntimeError(f"rl.rollout_batch ({cfg.rollout_batch}) and rl.minibatch ({cfg.minibatch}) must be "
                           f"multiples of the {world} processes (each takes an equal share)")
    if packs_groups(cfg) and (cfg.minibatch // world) % G:
        logging.getLogger("rewdistill").warning(
            f"rl.batching question: a minibatch of {cfg.minibatch // world} responses per process is rounded to whole "
            f"groups of {G} ({max(1, cfg.minibatch // world // G) * G}); set rl.minibatch to a multiple of "
            f"{G * world} to keep it")
    opt_p = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    sampler_copy = copy.deepcopy(policy) if is_fsdp(accelerator) else None  # whole weights to sample with (FSDP)
    policy, opt_p = accelerator.prepare(policy, opt_p)
    if note := sharding_note(accelerator, policy, "rl policy"):
        logging.getLogger("rewdistill").info(note)

    def actor():
        """The policy to sample with: under FSDP a whole copy, refreshed from the shards (every process gathers
        them), so that any engine can generate on one process (the watch, the selection check) or on each."""
        if sampler_copy is None:
            return accelerator.unwrap_model(policy)
        refresh_whole(sampler_copy, policy)
        return sampler_copy.eval()

    if algo.NEEDS_CRITIC:
        opt_c = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)
        critic, opt_c = accelerator.prepare(critic, opt_c)
    device = accelerator.device
    ref.to(device).eval()
    encoded = [fmt.prompt_ids(p) for p in prompts]
    cycle = PromptCycle(len(prompts), seed + first_step)
    kl_coef = cfg.kl_coef
    last = first_step + cfg.steps - 1
    models = {"policy": policy, **({"critic": critic} if algo.NEEDS_CRITIC else {})}
    optims = {"policy": opt_p, **({"critic": opt_c} if algo.NEEDS_CRITIC else {})}
    start, tokens_used = first_step, 0  # tokens_used: student rollout (response) tokens so far, for rl.token_budget
    if ckpt is not None and first_step <= (peek(ckpt.root, ckpt.tag) or 0) <= last:
        state = ckpt.load(models, optims)  # resume inside this round: weights, optimisers, controller, prompt order
        start, kl_coef, tokens_used = state["step"] + 1, state["kl_coef"], state.get("tokens_used", 0)
        cycle.rng.setstate(state["cycle_rng"])
        cycle.queue = list(state["cycle_queue"])
        if state.get("stopped"):
            start = last + 1  # resumed after an early stop (rl.early_stop): the stop stands, nothing left to train
    if cfg.token_budget is not None and tokens_used >= cfg.token_budget:
        start = last + 1  # resumed after the budget was spent: nothing left to train
    guard = Guard("rl", max_skips, "Lower rl.lr, check the reward (rl.reward_scale) or rl.kl_coef.")
    bar = tqdm(total=cfg.steps, initial=start - first_step, desc=f"rl ({cfg.algo})", unit="step",
               disable=not accelerator.is_main_process)
    sampling = actor() if start <= last else None
    for step in range(start, last + 1):
        idx = shard_of(cycle.take(cfg.rollout_batch), accelerator)  # this process's prompts (groups stay whole)
        ro = sample_rollout(sampling, ref, fmt, prompts, encoded, idx, G, cfg, device,
                            seed=seed * 100_003 + step + 7_919_111 * accelerator.process_index, engine=engine)
        raw = reward_fn(ro)
        dense, stats = None, {}
        if isinstance(raw, Scores):
            if raw.dense is not None:
                dense = raw.dense.to(device).float() * ro.resp_mask  # (B, T)
                stats["dense_reward"] = [dense.sum(1).mean().item()]  # per response, before any weighting by the algo
            stats["teacher_tokens"] = [float(raw.teacher_tokens) * world]  # averaged over processes below: a total
            raw = raw.terminal
        score = final_scores(raw.to(device).float(), ro.finished, cfg.reward_scale, cfg.unfinished_penalty)
        kl_tok = kl_per_token(ro.logp, ro.ref_logp, cfg.kl_estimator) * ro.resp_mask  # (B, T)
        kl = kl_tok.sum(1)  # (B,) per response
        a = algo.advantages(ro, score, kl_tok, kl_coef, cfg, critic, dense)
        checks = [score, a.advantages, *([a.returns] if a.returns is not None else []), *([dense] if dense is not None
                                                                                            else [])]
        ok = all_agree(accelerator, all_finite(*checks))
        upd, adv = ro, a.advantages  # what the policy update sees
        if cfg.filter_groups and not algo.NEEDS_CRITIC:  # only prompts whose responses' rewards differ
            keep = mixed_groups(score if dense is None else score + dense.sum(1), G)  # (B,)
            upd, adv = ro.subset(keep), adv[keep]
            stats["mixed_frac"] = [keep.float().mean().item()]
        if ok and len(upd.idx):  # a non-finite reward or advantage skips the whole step
            stats.update(actor_update(policy, opt_p, upd, adv, cfg, accelerator, seed + step,
                                      kl_loss_coef=kl_coef if algo.KL_IN_LOSS else 0.0,
                                      minibatch=cfg.minibatch // world))
            if algo.NEEDS_CRITIC:
                stats["explained_variance"] = [explained_variance(a.values, a.returns, ro.resp_mask)]
                stats.update(critic_update(critic, opt_c, ro, a.values, a.returns, cfg, accelerator, seed + step,
                                           minibatch=cfg.minibatch // world))
            ok = 0.0 in stats["skipped_minibatches"]  # skipped unless at least one minibatch updated the policy
        guard.record(ok)
        mean = lambda x: global_mean(accelerator, x)  # noqa: E731  over all processes' rollouts
        row = {
            "stage": "rl", "step": step, "algo": cfg.algo,
            "reward": mean(score.mean().item()),
            "kl": mean(kl.mean().item()),  # per-response KL(pi || ref), summed over tokens
            "kl_coef": kl_coef,
            "response_length": mean(ro.resp_mask.sum(1).mean().item()),
            "rollout_tokens": tokens_used + round(mean(ro.resp_mask.sum().item()) * world),  # cumulative, all processes
            "finished_frac": mean(ro.finished.float().mean().item()),
            "skipped": int(not ok), "skipped_total": guard.skipped,
            **{k: mean(sum(v) / len(v)) for k, v in stats.items()},
        }
        if cfg.kl_target is not None:
            kl_coef = adaptive_kl_coef(kl_coef, row["kl"], cfg.kl_target, cfg.kl_horizon)
        tokens_used = row["rollout_tokens"]
        log(row)
        sampling = actor()  # the updated policy: for the checks below and the next step's rollout
        stop = bool(on_step(step, ro, sampling, score.cpu())) if on_step is not None else False
        stop = not all_agree(accelerator, not stop)  # early stop (rl.early_stop) when any process asks for it
        stop = stop or (cfg.token_budget is not None and tokens_used >= cfg.token_budget)
        if ckpt is not None and ckpt.every > 0 and (ok or stop) and (ckpt.due(step) or step == last or stop):
            ckpt.save(step, models, optims, {"kl_coef": kl_coef, "tokens_used": tokens_used,
                                             "cycle_rng": cycle.rng.getstate(),
                                             "cycle_queue": cycle.queue, "stopped": stop})
        kill_point("rl-step")
        bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{row['kl']:.3f}")
        bar.update(1)
        if stop:
            break
    bar.close()
    return policy
