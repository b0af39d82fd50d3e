"""Typed configuration: one section per stage, every field described, validated on load (`config_files.py`
reads YAML files and CLI overrides into it)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ConfigError(Exception):
    """A bad config file or option; the message names the key and what to do."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskCfg(Section):
    name: Literal["tiny-arith", "tiny-choice", "gsm8k", "mmlu-pro", "jsonl"] = Field("tiny-arith", description=
        "task: tiny-arith / tiny-choice (shipped, generated), gsm8k, mmlu-pro, or jsonl (your own)")
    path: str | None = Field(None, description="gsm8k / mmlu-pro / jsonl: a local JSONL/parquet file, or a directory "
                             "with train/validation/test files; null = the hub (needs `pip install datasets` and the "
                             "network)")
    data_seed: int = Field(0, description="seed that generates the tiny tasks and carves missing splits of file tasks")
    n_train: int = Field(2000, ge=1, description="training questions used (gold answers never read)")
    n_test: int = Field(300, ge=1, description="held-out questions scored by evaluate")
    n_selection: int = Field(100, ge=0, description="validation questions (the last ones; gold never read) that the "
                             "teacher also answers and pseudo-labels, so that the rl stage can choose its checkpoint "
                             "without gold")
    n_validation: int = Field(200, ge=1, description="file tasks without a validation file: rows carved out of train")
    n_heldout: int = Field(1000, ge=1, description="file tasks with no train file (e.g. MMLU-Pro): test rows kept")
    bad_rows: Literal["fail", "skip"] = Field("fail", description="a bad data row: fail (file and line) or skip+count")
    num_fewshot: int = Field(0, ge=0, le=8, description="gsm8k: chain-of-thought exemplars in the prompt (fixed, "
                             "Wei et al.)")
    answer_mode: Literal["auto", "strict", "flexible"] = Field("auto", description=
        "gsm8k: strict (#### N), flexible (last number), auto (#### N if present, else last number)")
    answer_type: Literal["numeric", "choice", "text"] = Field("numeric", description="jsonl: how answers compare")
    chat_template: Literal["auto", "on", "off"] = Field("auto", description="wrap prompts in the tokenizer's chat "
                                                        "template: auto = when the tokenizer has one")


class ModelsCfg(Section):
    teacher: str = Field("zoo:teacher", description="teacher: HF hub id, local directory or zoo:<name>")
    student: str = Field("zoo:student", description="student base: HF hub id, local directory or zoo:<name>")
    device: str = Field("auto", description="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype for sampling and frozen models: auto = bf16 on GPU and on a CPU with AMX "
        "(models/precision.py), fp32 on other CPUs")
    trust_remote_code: bool = Field(False, description="allow model repos to run their own code (off: safe)")
    teacher_backend: Literal["hf", "vllm", "openai"] = Field(
        "hf", description="how the teacher samples and judges: hf (transformers, local), vllm (pip install vllm), "
        "openai (any OpenAI-compatible server, see the openai section; models.teacher is then only a label)")
    sampler: Literal["fast", "hf"] = Field(
        "fast", description="engine for local sampling (teacher with the hf backend, student, RL rollouts, "
        "evaluation): fast (rewdistill's decode loop for Llama / Mistral / Qwen2 / Qwen3, other models use hf) or hf "
        "(transformers generate); greedy outputs are the same")


class OpenAICfg(Section):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="server root, up to and including /v1")
    model: str | None = Field(None, description="model name the server knows; null = models.teacher")
    endpoint: Literal["chat", "completions"] = Field("chat", description="chat (server's template) / completions (raw)")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key (the key "
                                    "itself never goes in a config, log or run directory)")
    concurrency: int = Field(8, ge=1, description="requests in flight at once")
    n_per_request: int = Field(4, ge=1, description="samples asked for in one request (`n`)")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(5, ge=0, description="retries of a failed request (429, 5xx, network), with backoff")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry (capped at 60 s)")


class VLLMCfg(Section):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one teacher copy is split over")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="fraction of GPU memory vLLM may take")
    max_model_len: int | None = Field(None, ge=1, description="context length limit; null = the model's")


class SampleCfg(Section):
    temperatures: list[float] = Field([0.6, 0.8, 1.0, 1.2], min_length=1, description="sampling temperatures")
    n_per_temperature: int = Field(2, ge=1, description="responses per question at each temperature")
    max_new_tokens: int = Field(64, ge=1, description="response length limit in tokens")
    batch_size: int = Field(256, ge=1, description="prompts per generation batch")


class PseudoLabelCfg(Section):
    method: Literal["auto", "vote", "judge"] = Field(
        "auto", description="vote: majority vote over extracted answers; judge: the teacher grades each response "
        "(LLM-as-judge); auto: judge for jsonl tasks with answer_type text, vote otherwise")
    min_vote_share: float = Field(0.5, ge=0.0, le=1.0, description="drop questions whose top answer (judge: whose "
                                  "label-1 responses) has a smaller share")
    judge_threshold: float = Field(7.0, ge=1, le=10, description="judge: a response with score >= this is label 1")
    judge_max_new_tokens: int = Field(256, ge=1, description="judge: length limit of one judgement")
    judge_batch_size: int = Field(64, ge=1, description="judge (hf backend): prompts per generation batch")


Batching = Literal["random", "question"]
Precision = Literal["auto", "no", "bf16", "fp16"]
PRECISION_HELP = ("accelerate mixed precision; auto: bf16 on a CPU with AMX, one process (fast bf16 matrix products; "
                  "attention stays fp32: models/precision.py), else no")
BATCHING_HELP = ("random: each batch draws responses independently; question: each batch holds whole questions, "
                 "packed so that a prompt is computed once per row (faster, same loss; benchmarks/README.md)")


SFT_EPOCHS = {"tiny-choice": 10}  # sft.epochs null: the task's own, where validation chose one (docs/rl.md)


class SFTCfg(Section):
    epochs: int | None = Field(None, ge=1, description="passes over the label-1 teacher responses; null: the task's "
                               "(10 for tiny-choice, else 12; chosen on validation: docs/rl.md)")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate (linear warmup, cosine decay)")
    warmup_frac: float = Field(0.05, ge=0, le=1, description="fraction of steps spent warming up")
    batch_size: int = Field(32, ge=1, description="sequences per optimiser step (before accumulation)")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per optimiser step")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    batching: Literal["random", "length", "question"] = Field(
        "random", description=BATCHING_HELP + "; length: batches of similar lengths (each from a sorted window of 4 "
        "batches: little padding, faster). length and question are not recommended for SFT: on the tiny tasks the "
        "student lost accuracy on validation (benchmarks/README.md)")
    duplicates: Literal["keep", "drop", "weight"] = Field("keep", description="keep: every label-1 teacher response; "
                                                          "drop / weight: one copy of each (weight: loss x its count)")
    mixed_precision: Precision = Field("auto", description=PRECISION_HELP)
    compile: Literal["off", "on", "auto"] = Field("off", description="torch.compile the student's forward and loss "
                                                  "(benchmarks/README.md); auto: one CPU process with a C++ compiler")
    forward: Literal["suffix", "full"] = Field("suffix", description="suffix: last layer and head only where a response"
                                               " token is predicted (models/suffix.py; random or length batching, one "
                                               "process, not compiled); full: the model's forward")


class RewardModelCfg(Section):
    kind: Literal["likelihood", "scalar"] = Field(
        "likelihood", description="likelihood: score = scale x the model's mean log-prob of the response + bias, the "
        "language model itself fine-tuned on the labels (keeps what it knows); scalar: a classification head on the "
        "last token (the paper)")
    init: str = Field("teacher", description="starting weights: teacher (responses are re-tokenised as text when its "
                      "tokenizer differs), sft (the SFT student, as in the paper), or a model path / hub id")
    loss: Literal["bce", "bt"] = Field("bce", description="bce: pointwise on labels; bt: Bradley-Terry on label-1 vs "
                                       "label-0 pairs")
    epochs: int = Field(1, ge=1, description="passes over the labelled teacher + student responses (the scalar head "
                        "was tuned with 2)")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (the scalar head was tuned with 1e-3)")
    batch_size: int = Field(32, ge=1, description="sequences (or pairs) per optimiser step")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per optimiser step")
    use_student_samples: bool = Field(True, description="train on student responses too (the paper's method)")
    duplicates: Literal["keep", "drop"] = Field("drop", description="drop: one copy of each distinct (question, "
                                                "response) (as good on validation, 2.4x faster: docs/rl.md); keep: all")
    batching: Batching = Field("random", description=BATCHING_HELP + "; question kept the validation ranking, but is "
                               "not reproducible at > 1 thread on CPU (docs/rl.md)")
    mixed_precision: Precision = Field("auto", description=PRECISION_HELP)
    forward: Literal["suffix", "full"] = Field("suffix", description="as sft.forward (scalar kind: the last layer at "
                                               "the last token only)")


class RLCfg(Section):
    algo: Literal["ppo", "grpo", "rloo", "raft"] = Field(
        "grpo", description="ppo: critic + GAE; grpo: group-normalised advantages, KL in the loss; rloo: "
        "leave-one-out baseline; raft: a likelihood step on each group's best response (reward-ranked fine-tuning)")
    reward: Literal["rm", "rm-vote", "pseudo-label", "hybrid", "teacher-judge", "teacher-kl", "rm+teacher-kl",
                    "gold"] = Field(
        "rm-vote", description="rm: distilled reward model's score (the paper); rm-vote: its weighted vote share "
        "of the response's answer within its group (scores answers, not wording; group_size >= 2); pseudo-label: "
        "1 if the answer equals the teacher's majority vote; hybrid: rm + pseudo-label where one exists; "
        "teacher-judge: the teacher's mean token log-prob of the response; teacher-kl: on-policy distillation, "
        "per-token log p_teacher - log p_student (needs the student's tokenizer); rm+teacher-kl: rm + "
        "teacher_kl_coef x teacher-kl; gold: ORACLE upper bound, the only training use of gold answers")
    teacher_kl_coef: float = Field(1.0, ge=0, description="rm+teacher-kl: weight of the teacher's per-token term")
    teacher_kl_gate: Literal["none", "vote-share"] = Field(
        "none", description="rm+teacher-kl: none = fixed weights; vote-share = per prompt, the teacher's vote share g "
        "(0 at gate_lo, 1 at gate_hi) weighs the teacher term by g and the reward model by 1 - g")
    gate_lo: float = Field(0.5, ge=0, le=1, description="vote-share gate: at or below this share, reward model only")
    gate_hi: float = Field(1.0, ge=0, le=1, description="vote-share gate: at or above this share, teacher term only")
    steps: int = Field(40, ge=0, description="RL iterations (rollout + update) per round")
    token_budget: int | None = Field(None, ge=1, description="stop a round's RL once its rollouts hold this many "
                                     "student response tokens (equal budgets across reward sources; per round, so "
                                     "R rounds spend R budgets); null = rl.steps decides")
    rounds: int = Field(1, ge=1, description="rounds: after each, the student re-samples, the reward model is "
                        "retrained on the new responses too, and RL continues")
    rollout_batch: int = Field(16, ge=1, description="prompts per rollout")
    group_size: int = Field(8, ge=1, description="responses per prompt in a rollout (grpo / rloo need >= 2)")
    minibatch: int = Field(32, ge=1, description="responses per optimisation minibatch")
    batching: Batching = Field("question", description=BATCHING_HELP + " (docs/rl.md); with one response per prompt "
                               "nothing is shared and rows are padded")
    filter_groups: bool = Field(False, description="grpo / rloo: update only on prompts whose responses' rewards "
                                "differ (DAPO's filter); groups that all score the same carry no signal")
    ppo_epochs: int = Field(2, ge=1, description="optimisation passes over each rollout")
    lr: float = Field(2e-5, gt=0, description="policy learning rate")
    critic_lr: float = Field(5e-4, gt=0, description="critic (value model) learning rate, ppo only")
    kl_coef: float = Field(0.1, ge=0, description="KL penalty to the frozen SFT model (reward; grpo: loss)")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="KL estimator used in the reward")
    kl_target: float | None = Field(None, gt=0, description="adaptive KL controller target (KL per response); null = "
                                    "fixed coef")
    kl_horizon: int = Field(20, ge=1, description="adaptive KL controller horizon, in RL steps")
    clip: float = Field(0.2, gt=0, description="policy ratio clip")
    value_clip: float = Field(0.2, gt=0, description="value clip around the rollout's values")
    vf_coef: float = Field(0.5, ge=0, description="value-loss weight")
    gamma: float = Field(1.0, ge=0, le=1, description="discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    whiten_rewards: bool = Field(False, description="ppo: whiten the terminal scores over each rollout")
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    max_new_tokens: int = Field(64, ge=1, description="rollout response length limit")
    reward_scale: float = Field(1.0, description="multiplies the reward (rm: a logit; rules: 0/1)")
    vote_weights: Literal["rm", "uniform"] = Field("rm", description="rm-vote: weigh each response's vote by "
                                                   "sigmoid(reward-model logit), or uniform (plain self-consistency)")
    hybrid_weight: float = Field(1.0, ge=0, description="hybrid: added (+w agree, -w disagree) to the rm score")
    unfinished_penalty: float | None = Field(-1.0, description="reward for a response cut by max_new_tokens; null = "
                                             "score it like any other")
    watch_every: int = Field(10, ge=0, description="diagnostic: every N steps, greedy gold accuracy and reward on a "
                             "fixed validation subset (never used for training); 0 = off")
    watch_n: int = Field(100, ge=1, description="validation questions in the reward-hacking watch")
    select: Literal["last", "best"] = Field("last", description="student_rl: the last step's policy, or the one "
                                            "whose greedy answers agree best with the teacher's pseudo-labels on the "
                                            "selection questions (task.n_selection; no gold needed)")
    select_every: int = Field(10, ge=0, description="steps between selection checks (pseudo-label agreement on the "
                              "selection questions, logged); 0 = off")
    early_stop: int = Field(0, ge=0, description="stop after this many selection checks in a row whose agreement is "
                            "below the best while the rollout reward is above its value there; 0 = never")
    select_metric: Literal["agreement", "teacher_vote"] = Field(
        "agreement", description="the selection check's score (both are logged): agreement = greedy answers equal "
        "to the teacher's kept pseudo-labels; teacher_vote = the teacher's vote share of the policy's sampled "
        "answers (rl.select_samples per question, every selection question, no vote-share cut)")
    select_samples: int = Field(4, ge=0, description="policy samples (T = 1) per selection question for the "
                                "teacher_vote score; 0 = not computed")
    mixed_precision: Precision = Field("no", description=PRECISION_HELP)

    @model_validator(mode="after")
    def _groups(self):
        if self.reward == "rm-vote" and self.group_size < 2:
            raise ValueError("rl.reward rm-vote votes among one prompt's responses: set rl.group_size >= 2 (e.g. 8)")
        if self.algo in ("grpo", "rloo", "raft") and self.group_size < 2:
            raise ValueError(f"rl.algo {self.algo} compares responses to one prompt: set rl.group_size >= 2 (e.g. 4)")
        return self


class EvalCfg(Section):
    split: Literal["test", "validation"] = Field("test", description="held-out split to score; tune on validation")
    teacher: bool = Field(True, description="score the teacher too (greedy and maj@K); off to save time when comparing "
                          "students")
    maj_k: int = Field(8, ge=1, description="teacher samples per question for maj@K (spread over sample temperatures)")
    max_new_tokens: int = Field(64, ge=1, description="response length limit")
    batch_size: int = Field(256, ge=1, description="prompts per generation batch")
    best_of_k: int = Field(8, ge=0, description="diagnostic: the SFT student samples K responses per question at T=1; "
                           "report best-of-K by the reward model vs majority vote, pass@K and a random sample (0: off)")


class LoraCfg(Section):
    student: bool = Field(False, description="train the student (sft, rl) as LoRA adapters (peft); saved as "
                          "<name>_lora/ and merged into <name>/")
    reward_model: bool = Field(False, description="train the reward model (and PPO's critic) as LoRA adapters")
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    target_modules: str | list[str] = Field("all-linear", description="adapters on: all-linear, or module names")

    @field_validator("alpha")
    @classmethod
    def _whole_alpha_as_int(cls, v: float) -> float:  # as the default 32: a run's config.yaml read back hashes alike
        return int(v) if float(v).is_integer() else v


class ReliabilityCfg(Section):
    checkpoint_every: int = Field(25, ge=0, description="sft / reward-model / rl: save resumable state (weights, "
                                  "optimiser, RNG, data position) every N optimiser steps; 0 = never")
    max_nonfinite_skips: int = Field(10, ge=1, description="steps in a row with a non-finite loss, reward or advantage "
                                     "that are skipped before the stage stops with an error")


class LogCfg(Section):
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        [], description="experiment trackers (accelerate's) that get every metric row and the config: tensorboard, "
        "wandb (offline unless WANDB_MODE says otherwise), mlflow; several: a list or comma-separated "
        "(--log.with is the same option)")

    @field_validator("trackers", mode="before")
    @classmethod
    def _split(cls, v):
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class Config(Section):
    seed: int = Field(0, description="seed for sampling and training")
    task: TaskCfg = TaskCfg()
    models: ModelsCfg = ModelsCfg()
    openai: OpenAICfg = OpenAICfg()
    vllm: VLLMCfg = VLLMCfg()
    teacher_sample: SampleCfg = SampleCfg()
    pseudo_label: PseudoLabelCfg = PseudoLabelCfg()
    sft: SFTCfg = SFTCfg()
    student_sample: SampleCfg = SampleCfg(temperatures=[0.8, 1.0], n_per_temperature=2)
    reward_model: RewardModelCfg = RewardModelCfg()
    rl: RLCfg = RLCfg()
    evaluate: EvalCfg = EvalCfg()
    reliability: ReliabilityCfg = ReliabilityCfg()
    lora: LoraCfg = LoraCfg()
    log: LogCfg = LogCfg()

    @model_validator(mode="after")
    def _task_defaults(self):
        if self.sft.epochs is None:  # a copy: an SFTCfg the caller passed in stays as it was
            self.sft = self.sft.model_copy(update={"epochs": SFT_EPOCHS.get(self.task.name, 12)})
        return self
