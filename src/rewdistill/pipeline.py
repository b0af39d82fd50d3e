"""The pipeline: the ordered stages, each with the config sections it depends on, and a manifest.

A stage's hash covers its own config sections and the hash of the stage before it, so changing one
stage's config reruns that stage and everything after it; unchanged finished stages are skipped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from rewdistill.config import Config, section_hash
from rewdistill.io import read_json, write_json
from rewdistill.stages import evaluate, pseudo_label, reward_model, rl, sft, student_sample, teacher_sample
from rewdistill.stages.common import Ctx

logger = logging.getLogger("rewdistill")


@dataclass
class Stage:
    name: str
    run: Callable[[Ctx], str]  # does the work, returns a one-line summary
    deps: Callable[[Config], list]  # the config sections whose change reruns this stage


STAGES = [
    Stage("teacher-sample", teacher_sample.run,
          lambda c: [c.seed, c.task.name, c.task.data_seed, c.task.n_train, c.models.teacher, c.models.dtype, c.teacher_sample]),
    Stage("pseudo-label", pseudo_label.run, lambda c: [c.pseudo_label]),
    Stage("sft", sft.run, lambda c: [c.models.student, c.sft]),
    Stage("student-sample", student_sample.run, lambda c: [c.student_sample]),
    Stage("reward-model", reward_model.run, lambda c: [c.reward_model]),
    Stage("rl", rl.run, lambda c: [c.rl]),
    Stage("evaluate", evaluate.run, lambda c: [c.task.n_test, c.models.student, c.evaluate]),
]
STAGE_NAMES = [s.name for s in STAGES]


def stage_hashes(cfg: Config) -> dict[str, str]:
    out, prev = {}, ""
    for s in STAGES:
        prev = section_hash(*s.deps(cfg), prev)
        out[s.name] = prev
    return out


def run_pipeline(cfg: Config, run_dir: Path, until: str | None = None) -> dict:
    """Run (or skip, when already done with the same config) every stage up to `until`; returns the manifest."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False), encoding="utf-8")
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {"stages": {}}
    hashes = stage_hashes(cfg)
    ctx = Ctx(cfg, run_dir)
    stale = False
    for i, stage in enumerate(STAGES):
        done = manifest["stages"].get(stage.name, {})
        if not stale and done.get("hash") == hashes[stage.name] and done.get("done"):
            logger.info(f"[{i + 1}/{len(STAGES)}] {stage.name}: done already ({done.get('summary', '')})")
        else:
            stale = True  # everything after a rerun stage reruns too
            manifest["stages"].pop(stage.name, None)
            write_json(manifest_path, manifest)
            t0 = time.time()
            summary = stage.run(ctx)
            seconds = time.time() - t0
            manifest["stages"][stage.name] = {"hash": hashes[stage.name], "done": True, "seconds": round(seconds, 1),
                                              "summary": summary}
            write_json(manifest_path, manifest)
            logger.info(f"[{i + 1}/{len(STAGES)}] {stage.name}: {summary} ({seconds:.0f}s)")
        if stage.name == until:
            break
    return manifest
