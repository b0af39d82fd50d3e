"""The stages of a run, in order: each with the config sections its hash covers and the files it writes.

A stage's hash covers its own config sections and the hash of the stage before it, so changing one
stage's config reruns that stage and everything after it (`stage_hashes`).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from rewdistill.config import Config, ConfigError
from rewdistill.models.precision import processes, run_device
from rewdistill.models.precision import resolve as resolve_precision
from rewdistill.stages import evaluate, pseudo_label, reward_model, rl, sft, student_sample, teacher_sample
from rewdistill.stages.common import Ctx
from rewdistill.train.rollout import packs_groups


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


def section_hash(*parts) -> str:
    """Stable short hash of config sections (pydantic models, dicts or strings)."""
    blob = json.dumps([p.model_dump() if isinstance(p, BaseModel) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_hashes(cfg: Config) -> dict[str, str]:
    """Each stage's chained config hash, by manifest key."""
    out, prev = {}, ""
    for s in stages_for(cfg):
        prev = section_hash(*s.deps(cfg), prev)
        out[s.key] = prev
    return out
