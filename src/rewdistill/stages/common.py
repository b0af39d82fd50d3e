"""What every stage gets: the config, the run directory (and the RL round it works on), a metrics log, devices,
an Accelerator, prompt formats, samplers built from the config, and the labelling of new samples.

Shared by the stages; no stage imports another stage."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed

from rewdistill import labels as L
from rewdistill.config import Config
from rewdistill.io import MetricsLog, read_jsonl
from rewdistill.launch import use_launched_engine
from rewdistill.models import precision
from rewdistill.models.load import load_causal_lm, load_prompt_format, resolve
from rewdistill.models.prompt import PromptFormat
from rewdistill.sampling.backends import HFSampler, VLLMSampler
from rewdistill.sampling.openai_api import OpenAISampler
from rewdistill.tasks import task_from_config
from rewdistill.tasks.base import Question


@dataclass
class Ctx:
    cfg: Config
    run_dir: Path
    stage_hash: str = ""  # the running stage's config hash (set by the pipeline; tags its checkpoints)
    shard: tuple[int, int] | None = None  # sampling stages: sample only chunks k with k % n == i
    merge: bool = False  # sampling stages: join the shards written by `shard` runs instead of sampling
    round: int = 1  # the RL round a round stage (student-sample, reward-model, rl) works on; set by the pipeline
    trackers: object = None  # tracking.Trackers when log.trackers names any (main process), set by the pipeline

    @cached_property
    def task(self):
        return task_from_config(self.cfg.task)

    @property
    def device(self) -> str:
        return precision.run_device(self.cfg.models.device)

    def metrics(self, stage: str, main_process: bool = True):
        """This round's `<stage>_metrics.jsonl` logger (a no-op on non-main processes): fresh, or, when the stage's
        checkpoint will be resumed, keeping the rows up to its step."""
        if not main_process:
            return lambda row: None
        from rewdistill.train.checkpoint import peek

        keep = peek(self.run_dir / "checkpoints" / self.checkpoint_name(stage), self.stage_hash)
        log = MetricsLog(self.round_path(f"{stage}_metrics.jsonl"), keep)
        if self.trackers is None:
            return log
        name, trackers = (stage if self.round == 1 else f"{stage}@{self.round}"), self.trackers

        def log_and_track(row: dict) -> None:
            log(row)
            trackers.log(name, row)

        return log_and_track

    def checkpoint_name(self, stage: str) -> str:
        return stage if self.round == 1 else f"{stage}_round{self.round}"

    def checkpoint(self, name: str, accelerator):
        """Resumable state of a training loop, in run_dir/checkpoints/<name>, tagged with this stage's hash."""
        from accelerate.utils import DistributedType

        from rewdistill.train.checkpoint import Checkpoint

        every = self.cfg.reliability.checkpoint_every
        if every and accelerator.distributed_type == DistributedType.DEEPSPEED:
            import logging

            logging.getLogger("rewdistill").warning(
                "resume checkpoints are written for single-process, DDP and FSDP runs; under DeepSpeed a crashed "
                "training stage restarts from its beginning")
            every = 0
        return Checkpoint(self.run_dir / "checkpoints" / self.checkpoint_name(name), every, accelerator,
                          self.stage_hash)

    def accelerator(self, mixed_precision: str, grad_accum: int = 1) -> Accelerator:
        """A fresh Accelerator for one stage (stages may differ in precision and accumulation); `auto` precision
        resolved for this device (`models.precision`)."""
        mixed_precision = precision.resolve(mixed_precision, self.device, precision.processes())
        if mixed_precision == "bf16" and self.device == "cpu":
            precision.keep_cpu_attention_fp32()
        AcceleratorState._reset_state()  # keeps the process group; drops the previous stage's settings
        GradientState._reset_state()
        set_seed(self.cfg.seed)
        acc = Accelerator(
            cpu=self.device == "cpu", mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum
        )
        use_launched_engine(acc)  # FSDP 2 on CPU processes (launch.py)
        return acc

    def prompt_format(self, path: str) -> PromptFormat:
        """The tokenizer at `path` with the run's trust and chat-template settings (every stage loads them here)."""
        return load_prompt_format(path, self.cfg.models.trust_remote_code, self.cfg.task.chat_template)

    def causal_lm(self, path: str, dtype: str | None = None):
        m = self.cfg.models
        return load_causal_lm(path, self.device, dtype or m.dtype, m.trust_remote_code)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def round_path(self, name: str, r: int | None = None) -> Path:
        """`name` of round r (default: this stage's round): round 1 in the run directory, round r in `round<r>/`."""
        r = self.round if r is None else r
        return self.run_dir / name if r == 1 else self.run_dir / f"round{r}" / name

    def questions(self) -> list[dict]:
        """Training questions as written by teacher-sample: {qid, prompt} (no gold answers)."""
        return read_jsonl(self.path("questions.jsonl"))

    @cached_property
    def train_questions(self) -> dict[str, Question]:
        """Training questions by qid, without gold answers (answer extraction needs e.g. the number of options)."""
        return {q.qid: q for q in self.task.questions("train")}

    def extract(self, text: str, qid: str) -> str | None:
        """The final answer in a response to training question `qid`."""
        return self.task.extract(text, self.train_questions[qid])

    def labels(self) -> dict[str, dict]:
        """The pseudo-label stage's labels by qid."""
        return {lab["qid"]: lab for lab in read_jsonl(self.path("labels.jsonl"))}

    # -- samplers built from the config -----------------------------------------------------------------------------
    def teacher_sampler(self, batch_size: int, purpose: str = "samples"):
        """The configured teacher backend. `purpose` names the openai backend's resume cache in the run dir."""
        m = self.cfg.models
        if m.teacher_backend == "openai":
            return OpenAISampler(self.cfg.openai, m.teacher, Path(self.run_dir) / f"openai_{purpose}.jsonl")
        if m.teacher_backend == "vllm":
            dtype = "auto" if m.dtype == "auto" else m.dtype
            return VLLMSampler(resolve(m.teacher), self.prompt_format(m.teacher), self.cfg.vllm, dtype,
                               m.trust_remote_code)
        return self.local_sampler(m.teacher, batch_size)

    def local_sampler(self, model_path: str, batch_size: int) -> HFSampler:
        """A transformers sampler for a local model (the student; the teacher with the hf backend)."""
        fmt = self.prompt_format(model_path)  # first: a wrong path fails on the cheaper load
        return HFSampler(self.causal_lm(model_path).eval(), fmt, batch_size, self.cfg.models.sampler)

    # -- labelling ----------------------------------------------------------------------------------------------------
    @property
    def label_method(self) -> str:
        """vote or judge (`pseudo_label.method`, auto resolved for the task)."""
        return L.method_for(self.cfg.pseudo_label.method, self.cfg.task.name, self.cfg.task.answer_type)

    def judge(self, samples: list[dict], who: str) -> tuple[list[dict], int]:
        """Samples with `judge_score` and `label` from the teacher-as-judge; unparsable judgements are dropped and
        counted. Returns (judged rows, unparsable count)."""
        pc = self.cfg.pseudo_label
        prompts = {q["qid"]: q["prompt"] for q in self.questions()}
        sampler = self.teacher_sampler(pc.judge_batch_size, purpose=f"judge_{who}")
        scores = L.judge_scores(sampler, prompts, samples, pc.judge_max_new_tokens, self.cfg.seed, desc=f"judge {who}")
        judged = L.judged_rows(samples, scores, pc.judge_threshold)
        return judged, len(samples) - len(judged)

    def label_new(self, samples: list[dict], labels: dict[str, dict], who: str) -> list[dict]:
        """Label new (student) samples the way the teacher's were: agreement with the vote, or the judge."""
        if self.label_method == "vote":
            return L.agreement_labels(samples, labels)
        kept = [s for s in samples if labels.get(s["qid"], {}).get("kept")]
        return self.judge(kept, who)[0]


