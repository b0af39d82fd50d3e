"""What every stage gets: the config, the run directory, a metrics log, devices and an Accelerator."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed

from rewdistill.config import Config
from rewdistill.io import MetricsLog, read_jsonl
from rewdistill.tasks import task_from_config


class ShardDone(Exception):
    """A sampling stage wrote its shard (`--shard i/n`); the run stops there until the shards are merged."""


@dataclass
class Ctx:
    cfg: Config
    run_dir: Path
    stage_hash: str = ""  # the running stage's config hash (set by the pipeline; tags its checkpoints)
    shard: tuple[int, int] | None = None  # sampling stages: sample only chunks k with k % n == i
    merge: bool = False  # sampling stages: join the shards written by `shard` runs instead of sampling

    @cached_property
    def task(self):
        return task_from_config(self.cfg.task)

    @property
    def device(self) -> str:
        d = self.cfg.models.device
        if d == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return d

    def metrics(self, stage: str, main_process: bool = True, checkpoint: str | None = None):
        """A `<stage>_metrics.jsonl` logger (a no-op on non-main processes): fresh, or, when checkpoint `checkpoint`
        (default: `stage`) will be resumed, keeping the rows up to its step."""
        if not main_process:
            return lambda row: None
        from rewdistill.train.checkpoint import peek

        keep = peek(self.run_dir / "checkpoints" / (checkpoint or stage), self.stage_hash)
        return MetricsLog(self.run_dir / f"{stage}_metrics.jsonl", keep)

    def checkpoint(self, name: str, accelerator):
        """Resumable state of a training loop, in run_dir/checkpoints/<name>, tagged with this stage's hash."""
        from accelerate.utils import DistributedType

        from rewdistill.train.checkpoint import Checkpoint

        every = self.cfg.reliability.checkpoint_every
        if every and accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            import logging

            logging.getLogger("rewdistill").warning(
                "resume checkpoints are written for single-process and DDP runs only; under FSDP / DeepSpeed a "
                "crashed training stage restarts from its beginning")
            every = 0
        return Checkpoint(self.run_dir / "checkpoints" / name, every, accelerator, self.stage_hash)

    def accelerator(self, mixed_precision: str, grad_accum: int = 1) -> Accelerator:
        """A fresh Accelerator for one stage (stages may differ in precision and accumulation)."""
        AcceleratorState._reset_state()  # keeps the process group; drops the previous stage's settings
        GradientState._reset_state()
        set_seed(self.cfg.seed)
        return Accelerator(
            cpu=self.device == "cpu", mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum
        )

    def tokenizer(self, path: str):
        """A tokenizer loaded with the run's trust and chat-template settings (every stage loads them here)."""
        from rewdistill.models.load import load_tokenizer

        return load_tokenizer(path, self.cfg.models.trust_remote_code, self.cfg.task.chat_template)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def questions(self) -> list[dict]:
        """Training questions as written by teacher-sample: {qid, prompt} (no gold answers)."""
        return read_jsonl(self.path("questions.jsonl"))


def label_samples(samples: list[dict], labels: dict[str, dict]) -> list[dict]:
    """Attach label 1/0 (agreement with the question's pseudo-label) to samples of kept questions."""
    out = []
    for s in samples:
        lab = labels.get(s["qid"])
        if lab is None or not lab["kept"]:
            continue
        out.append({**s, "label": int(s["answer"] is not None and s["answer"] == lab["pseudo_answer"])})
    return out


def label_method(cfg: Config) -> str:
    """vote or judge (`pseudo_label.method`; auto = judge for free-text answers, which cannot be voted on)."""
    method = cfg.pseudo_label.method
    if method == "auto":
        return "judge" if cfg.task.name == "jsonl" and cfg.task.answer_type == "text" else "vote"
    return method


def judge_samples(ctx: "Ctx", samples: list[dict], who: str) -> tuple[list[dict], int]:
    """Samples with `judge_score` and `label` from the teacher-as-judge; unparsable judgements are dropped and
    counted. Returns (judged rows, unparsable count)."""
    from rewdistill.judge import judge_rows
    from rewdistill.sampling.backends import teacher_sampler

    pc = ctx.cfg.pseudo_label
    prompts = {q["qid"]: q["prompt"] for q in ctx.questions()}
    sampler = teacher_sampler(ctx, pc.judge_batch_size, purpose=f"judge_{who}")
    scores = judge_rows(sampler, prompts, samples, pc.judge_max_new_tokens, ctx.cfg.seed, desc=f"judge {who}")
    judged = [{**s, "judge_score": sc, "label": int(sc >= pc.judge_threshold)}
              for s, sc in zip(samples, scores) if sc is not None]
    return judged, len(samples) - len(judged)


def label_rows(ctx: "Ctx", samples: list[dict], labels: dict[str, dict], who: str) -> list[dict]:
    """Label new (student) samples the way the teacher's were: agreement with the vote, or the judge."""
    if label_method(ctx.cfg) == "vote":
        return label_samples(samples, labels)
    kept = [s for s in samples if labels.get(s["qid"], {}).get("kept")]
    return judge_samples(ctx, kept, who)[0]
