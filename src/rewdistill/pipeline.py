"""The pipeline: runs the stages (`stage_list`) in order and keeps a manifest of what each did, with its hash.

Changing one stage's config reruns that stage and everything after it; unchanged finished stages are skipped.

Rounds (`rl.rounds` = R): rounds 2..R repeat student-sample -> reward-model -> rl into `round<r>/` (`<stage>@<r>`).
"""
from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import set_seed

from rewdistill.artifacts import fingerprint, problems
from rewdistill.config import Config
from rewdistill.io import read_json, write_json, write_text_atomic
from rewdistill.launch import check_engine
from rewdistill.rundir import broadcast, run_dir_lock
from rewdistill.sampling.rows import ShardDone
from rewdistill.stage_list import STAGES, Stage, check_until, stage_hashes, stages_for, stops_after
from rewdistill.stages import rl
from rewdistill.stages.common import Ctx

logger = logging.getLogger("rewdistill")


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
