"""The pipeline: the ordered stages, each with the config sections it depends on, and a manifest.

A stage's hash covers its own config sections and the hash of the stage before it, so changing one
stage's config reruns that stage and everything after it; unchanged finished stages are skipped.

Rounds (`rl.rounds` = R): rounds 2..R repeat student-sample -> reward-model -> rl into `round<r>/` (`<stage>@<r>`).
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import set_seed

from rewdistill.artifacts import fingerprint, problems
from rewdistill.config import Config, ConfigError, section_hash
from rewdistill.io import read_json, write_json, write_text_atomic
from rewdistill.launch import check_engine
from rewdistill.models.precision import processes, run_device
from rewdistill.models.precision import resolve as resolve_precision
from rewdistill.rundir import broadcast, run_dir_lock
from rewdistill.sampling.rows import ShardDone
from rewdistill.stages import evaluate, pseudo_label, reward_model, rl, sft, student_sample, teacher_sample
from rewdistill.stages.common import Ctx
from rewdistill.train.rollout import packs_groups

logger = logging.getLogger("rewdistill")


@dataclass
class Stage:
    name: str
    run: Callable[[Ctx], str]  # does the work, returns a one-line summary
    deps: Callable[[Config], list]  # the config sections whose change reruns this stage
    outputs: list[str]  # files and directories it writes in the run directory (in `round<r>/` for r > 1)
    round: int = 1  # the RL round of a round stage (student-sample, reward-model, rl)

    @property
    def key(self) -> str:
        """Its name in the manifest: the stage name, with `@<round>` for rounds after the first."""
        return self.name if self.round == 1 else f"{self.name}@{self.round}"

    def paths(self) -> list[str]:
        return self.outputs if self.round == 1 else [f"round{self.round}/{o}" for o in self.outputs]


def teacher_endpoint(c: Config) -> dict:
    """What, besides models.teacher, decides the teacher's answers (not how fast they come: no concurrency)."""
    if c.models.teacher_backend == "openai":
        return {"base_url": c.openai.base_url, "model": c.openai.model, "endpoint": c.openai.endpoint}
    return {}


LEGACY = {("SFTCfg", "batching"): "random", ("SFTCfg", "duplicates"): "keep", ("SFTCfg", "compile"): "off",
          ("SFTCfg", "forward"): "full", ("RewardModelCfg", "batching"): "random", ("RewardModelCfg", "duplicates"):
          "keep", ("RewardModelCfg", "forward"): "full", ("RLCfg", "batching"): "random"}


def hashed(section, device: str = "auto") -> dict:
    """A section's fields for its stage hash, minus a later field (LEGACY) at its old value (older runs resume);
    `mixed_precision` auto as it resolves here (`models.precision.resolve`): `no` where older runs had it, so they
    resume, and a run is not continued in another precision on another machine."""
    name = type(section).__name__
    fields = section.model_dump()
    if fields.get("mixed_precision") == "auto":
        fields["mixed_precision"] = resolve_precision("auto", run_device(device), processes())
    return {k: v for k, v in fields.items() if LEGACY.get((name, k), object()) != v}


STAGES = [
    Stage("teacher-sample", teacher_sample.run,
          lambda c: [c.seed, c.task.model_dump(exclude={"n_test"}), c.models.teacher, c.models.dtype,
                     c.models.teacher_backend, teacher_endpoint(c), c.teacher_sample],
          ["questions.jsonl", "teacher_samples.jsonl", "selection_questions.jsonl", "selection_samples.jsonl"]),
    Stage("pseudo-label", pseudo_label.run, lambda c: [c.pseudo_label],
          ["labels.jsonl", "teacher_labelled.jsonl", "pseudo_label_stats.json", "selection_labels.jsonl"]),
    Stage("sft", sft.run, lambda c: [c.models.student, hashed(c.sft, c.models.device),
                                     c.lora.model_dump(exclude={"reward_model"})],
          ["student_sft", "student_sft_lora", "sft_metrics.jsonl"]),
    Stage("student-sample", student_sample.run, lambda c: [c.student_sample], ["student_samples.jsonl"]),
    Stage("reward-model", reward_model.run, lambda c: [hashed(c.reward_model, c.models.device),
                                                       c.lora.model_dump(exclude={"student"})],
          ["reward_model", "reward_model_lora", "reward_model_metrics.jsonl"]),
    Stage("rl", rl.run, lambda c: [{k: v for k, v in hashed(c.rl, c.models.device).items()  # batching: where it packs
                                    if k != "rounds" and (k != "batching" or packs_groups(c.rl))}, c.lora],
          ["student_rl", "student_rl_lora", "rl_metrics.jsonl", "rl_selection.json"]),
    Stage("evaluate", evaluate.run, lambda c: [c.task.n_test, c.models.student, c.evaluate],
          ["results.json", "report.md", "eval_samples.jsonl", "accuracy.png", "rl_curves.png"]),
]
STAGE_NAMES = [s.name for s in STAGES]
ROUND_STAGES = ("student-sample", "reward-model", "rl")


def check_until(until: str | None, rounds: int) -> None:
    """Refuse, in one line, an `until` naming no stage of a run of `rounds` RL rounds. A stage name stops after that
    stage (`rl`: the last round's; student-sample, reward-model: round 1's); `<stage>@<r>` after round r's (`rl@2`)."""
    if until is None:
        return
    name, at, r = until.partition("@")
    if name in STAGE_NAMES and (not at or (name in ROUND_STAGES and r.isdigit() and 1 <= int(r) <= rounds)):
        return
    raise ConfigError(f"until {until!r} is not a stage of this run; choose from {', '.join(STAGE_NAMES)}, or "
                      f"{' / '.join(s + '@R' for s in ROUND_STAGES)} for round R of 1..{rounds} (rl.rounds)")


def stops_after(until: str | None, stage: Stage, rounds: int) -> bool:
    """Whether the run ends after `stage` (`until` as `check_until` accepts it)."""
    name, at, r = (until or "").partition("@")
    if stage.name != name:
        return False
    return stage.round == int(r) if at else stage.name != "rl" or stage.round == rounds


def stages_for(cfg: Config) -> list[Stage]:
    """The stages of a run: the seven, with student-sample -> reward-model -> rl repeated for rounds 2..R."""
    base = {s.name: s for s in STAGES}
    out = STAGES[:-1]
    for r in range(2, cfg.rl.rounds + 1):
        out += [Stage(n, base[n].run, base[n].deps, base[n].outputs, r) for n in ROUND_STAGES]
    return out + STAGES[-1:]


def clear_progress(run_dir: Path) -> None:
    """Drop the crash-recovery state of a stage: training checkpoints and sampling progress files."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for p in [*run_dir.glob("*.progress.jsonl"), *run_dir.glob("round*/*.progress.jsonl")]:
        p.unlink()


def remove_outputs(run_dir: Path, stage: Stage) -> None:
    """Delete what a stage wrote in an earlier run, before it runs afresh."""
    for name in stage.paths():
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def stage_hashes(cfg: Config) -> dict[str, str]:
    """Each stage's chained config hash, by manifest key."""
    out, prev = {}, ""
    for s in stages_for(cfg):
        prev = section_hash(*s.deps(cfg), prev)
        out[s.key] = prev
    return out


def seed_from(src: Path, dst: Path, cfg: Config) -> list[str]:
    """Copy into `dst` the finished stages of run `src` that `cfg` would not change (same chained hash), with
    their manifest entries, so that running `cfg` in `dst` starts where the two configs part. Returns the
    stages copied. Copies, not links: nothing later written in `dst` can touch `src`."""
    src_manifest = read_json(src / "manifest.json")
    dst.mkdir(parents=True, exist_ok=True)
    manifest = {"stages": {}}
    for stage, h in zip(stages_for(cfg), stage_hashes(cfg).values()):
        done = src_manifest["stages"].get(stage.key, {})
        if done.get("hash") != h or not done.get("done"):
            break
        for name in stage.paths():
            if (src / name).is_dir():
                shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
            elif (src / name).exists():
                (dst / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, dst / name)
        manifest["stages"][stage.key] = done
    write_json(dst / "manifest.json", manifest)
    return list(manifest["stages"])


class RunDirError(Exception):
    """The run directory belongs to another config; the message says how to go on."""


def changed_stages(manifest: dict, hashes: dict[str, str]) -> list[str]:
    """Finished stages in `manifest` whose config hash differs from `hashes` (a stage that only started, e.g. one
    that failed on bad input, holds no result to protect)."""
    return [name for name, rec in manifest["stages"].items()
            if rec.get("done") and rec.get("hash") not in (None, hashes.get(name))]


TRAIN_STAGES = {"sft", "reward-model", "rl"}  # run on every process of a multi-process launch


def run_pipeline(cfg: Config, run_dir: Path, until: str | None = None, force: bool = False,
                 shard: tuple[int, int] | None = None, merge: bool = False) -> dict:
    """Run (or skip, when done with the same config) every stage up to `until` (`check_until`); return the manifest.

    A run directory made with another config is refused (its results would be overwritten) unless `force`,
    which reruns the changed stages and everything after them. A stage interrupted by a crash resumes: the
    manifest records it as started with its hash, and its progress files and checkpoints carry the same hash.

    Under a multi-process launch (`accelerate launch` / `torchrun`) the training stages run on every process
    (data sharded, gradients synchronised); the other stages run on the main process while the rest wait;
    only the main process writes. `shard=(i, n)`: the next sampling stage samples only its share of the
    question chunks and the run stops; `merge`: that stage joins the shards (checking that none is missing or
    doubled) instead of sampling.
    """
    check_until(until, cfg.rl.rounds)
    check_engine(cfg)
    dist = PartialState(cpu=not torch.cuda.is_available() or cfg.models.device == "cpu", timeout=timedelta(hours=24))
    if not dist.is_main_process:  # the main process holds the run directory for all of them
        return _run_stages(cfg, run_dir, until, force, shard, merge, dist)
    with run_dir_lock(run_dir):
        return _run_stages(cfg, run_dir, until, force, shard, merge, dist)


def _run_stages(cfg: Config, run_dir: Path, until: str | None, force: bool, shard, merge: bool, dist) -> dict:
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {"stages": {}}
    hashes = stage_hashes(cfg)
    changed = changed_stages(manifest, hashes)
    if changed and not force:
        raise RunDirError(f"run directory {run_dir} was made with another config (stages {', '.join(changed)} "
                          "differ); use a new --run-dir, or --force to rerun them there")
    dist.wait_for_everyone()
    main = dist.is_main_process
    if not main:  # one voice: the main process logs
        logger.setLevel(logging.WARNING)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    ctx = Ctx(cfg, run_dir, shard=shard, merge=merge)
    rl.preflight(ctx)  # a config error the rl stage would hit is reported now, not after hours of sampling
    if main and cfg.log.trackers:
        from rewdistill.tracking import Trackers

        ctx.trackers = Trackers(cfg, run_dir)
    try:
        return _stage_loop(cfg, run_dir, until, manifest, hashes, ctx, dist, main)
    finally:
        if ctx.trackers is not None:
            ctx.trackers.finish()


def _stage_loop(cfg: Config, run_dir: Path, until: str | None, manifest: dict, hashes: dict, ctx: Ctx, dist,
                main: bool) -> dict:
    manifest_path = run_dir / "manifest.json"
    stages = stages_for(cfg)
    keys = [s.key for s in stages]
    n = len(stages)
    stale = False
    for i, stage in enumerate(stages):
        key = stage.key
        done = manifest["stages"].get(key, {})
        damaged = problems(run_dir, done.get("files") or {}) if main and not stale and done.get("done") else []
        damaged = broadcast(damaged)  # one decision for every process (the main one reads the files)
        if damaged:  # a finished stage's output changed since it was written: redo that stage, not what follows
            logger.warning(f"[{i + 1}/{n}] {key}: {'; '.join(damaged)}; rerunning {key}")
        if not stale and done.get("hash") == hashes[key] and done.get("done") and not damaged:
            logger.info(f"[{i + 1}/{n}] {key}: done already ({done.get('summary', '')})")
        else:
            repairing = done.get("files") if damaged and done.get("hash") == hashes[key] else None
            resuming = not stale and done.get("hash") == hashes[key] and not damaged  # started by a run that died
            stale = True  # everything after a rerun stage reruns too
            old_stages = dict(manifest["stages"])
            manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in keys[:i]}
            manifest["stages"][key] = {"hash": hashes[key], "done": False}
            if main:
                if not resuming:
                    clear_progress(run_dir)
                    remove_outputs(run_dir, stage)  # optional outputs of an earlier config must not linger
                write_json(manifest_path, manifest)
            dist.wait_for_everyone()
            ctx.stage_hash, ctx.round = hashes[key], stage.round
            set_seed(cfg.seed * 1000 + i)  # each stage starts from its own RNG state, whatever ran before it
            t0 = time.time()
            summary = None
            try:
                if main or stage.name in TRAIN_STAGES:
                    summary = stage.run(ctx)
            except ShardDone as e:
                logger.info(f"[{i + 1}/{n}] {key}: {e}")
                return manifest
            dist.wait_for_everyone()
            seconds = time.time() - t0
            files = fingerprint(run_dir, stage.paths()) if main else {}
            manifest["stages"][key] = {"hash": hashes[key], "done": True, "seconds": round(seconds, 1),
                                       "summary": summary, "files": files}
            if broadcast(repairing is not None and files == repairing):  # rebuilt exactly: later stages stand
                stale = False
                manifest["stages"].update({k: v for k, v in old_stages.items() if k in keys[i + 1:]})
                logger.info(f"[{i + 1}/{n}] {key}: rebuilt identical to what was recorded; later stages kept")
            if main:
                write_json(manifest_path, manifest)
                clear_progress(run_dir)
            logger.info(f"[{i + 1}/{n}] {key}: {summary} ({seconds:.0f}s)")
        if stops_after(until, stage, cfg.rl.rounds):
            break  # `--until rl` runs every round; `--until reward-model` stops in round 1; `rl@2` after round 2
    results_path = run_dir / "results.json"
    if main and manifest["stages"].get("evaluate", {}).get("done") and results_path.exists():
        results = read_json(results_path)
        results["seconds"] = {key: rec.get("seconds") for key, rec in manifest["stages"].items()}
        write_json(results_path, results)
        manifest["stages"]["evaluate"]["files"] = fingerprint(run_dir, STAGES[-1].outputs)  # results.json changed
        write_json(manifest_path, manifest)
        from rewdistill.cards import model_dirs, write_model_cards

        if any(not (d / "README.md").exists() for d, *_ in model_dirs(run_dir)):  # a repaired stage lost its card
            write_model_cards(run_dir, cfg, results)
    return manifest
