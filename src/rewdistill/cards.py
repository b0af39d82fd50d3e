"""Model cards: a README.md in the hub's format in every model directory a run saved (student_sft/, reward_model/,
student_rl/, their `_lora` adapters and later rounds'), written by the evaluate stage, when the results exist.
Cards are documentation: run-directory fingerprints leave them out, so rewriting a card never marks a stage
damaged (`artifacts.fingerprint`)."""
from __future__ import annotations

from pathlib import Path

from rewdistill.report import format_table

DATASETS = {"gsm8k": "openai/gsm8k", "mmlu-pro": "TIGER-Lab/MMLU-Pro"}
WHAT = {
    "student_sft": ("text-generation", "sft", "the student after SFT on the teacher's pseudo-labelled responses "
                    "(data distillation)"),
    "reward_model": ("text-classification", "reward-model", "the distilled reward model: a scalar head trained on "
                     "pseudo-labelled teacher and student responses"),
    "student_rl": ("text-generation", "rl", "the student after RL against the distilled reward (data + reward "
                   "distillation)"),
}


def model_dirs(run_dir: Path) -> list[tuple[Path, str, int, bool]]:
    """(directory, kind, round, is a LoRA adapter) of every saved model in the run."""
    out = []
    for base in [run_dir, *sorted(run_dir.glob("round*"))]:
        r = 1 if base == run_dir else int(base.name.removeprefix("round"))
        for kind in WHAT:
            for lora in (False, True):
                d = base / (kind + ("_lora" if lora else ""))
                if (d / "config.json").exists() or (d / "adapter_config.json").exists():
                    out.append((d, kind, r, lora))
    return out


def is_local(ref: str) -> bool:
    """A model given as a path of this machine (a .gguf file, a save_pretrained directory), not a hub id or `zoo:`."""
    return not ref.startswith("zoo:") and (Path(ref).expanduser().exists() or Path(ref).expanduser().is_absolute()
                                           or ref.startswith(("./", "../", "~")) or ref.endswith(".gguf"))


def public_name(ref: str) -> str:
    """How a card names a model: a hub id or `zoo:` name as given, a local file or directory by its base name only
    (a card may be published: it never shows a path of the user's machine)."""
    return Path(ref).expanduser().name if is_local(ref) else ref


def card_text(cfg, results: dict, kind: str, rnd: int, lora: bool) -> str:
    from huggingface_hub import ModelCardData

    pipeline_tag, stage, what = WHAT[kind]
    student = cfg.models.student if kind != "reward_model" or cfg.reward_model.init == "sft" else \
        (cfg.models.teacher if cfg.reward_model.init == "teacher" else cfg.reward_model.init)
    hub_like = not student.startswith("zoo:") and not is_local(student)
    data = ModelCardData(
        base_model=student if hub_like else None, library_name="peft" if lora else "transformers",
        pipeline_tag=pipeline_tag, tags=["rewdistill", "distillation", "reward-distillation", stage],
        datasets=[DATASETS[cfg.task.name]] if cfg.task.name in DATASETS else None)
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {kind}{' (LoRA adapter)' if lora else ''}{f', round {rnd}' if rnd > 1 else ''}", "",
        f"Made by rewdistill (stage `{stage}`): {what}.", "",
        "| | |", "|---|---|",
        f"| student (base) | `{public_name(cfg.models.student)}` |",
        f"| teacher | `{public_name(cfg.models.teacher)}` ({cfg.models.teacher_backend}) |",
        f"| task | `{cfg.task.name}` |",
        f"| reward | `{cfg.rl.reward}` ({cfg.rl.algo}, {cfg.rl.steps} steps x {cfg.rl.rounds} round(s)) |",
        f"| seed | {cfg.seed} |", "",
        f"## Results of the run ({results['split']}, {results['n_test']} questions, greedy)", "",
        format_table(results), "",
        "Load it with plain `transformers`:", "", "```python",
        "from transformers import " + ("AutoModelForSequenceClassification as Auto" if kind == "reward_model"
                                        else "AutoModelForCausalLM as Auto") + ", AutoTokenizer",
        'model, tok = Auto.from_pretrained("PATH"), AutoTokenizer.from_pretrained("PATH")', "```", "",
        *(["The score of a sequence is read at its last token: give it the prompt as the model reads it (its chat",
           "template) + the response + the EOS token, batches padded on the right (the saved tokenizer does);",
           "use this merged directory rather than a LoRA adapter on its base (whose config pads differently).", ""]
          if kind == "reward_model" and not lora else []),
        "The run's full config is `config.yaml` in its run directory.", ""]
    return "\n".join(lines)


def write_model_cards(run_dir: Path, cfg, results: dict) -> list[Path]:
    from huggingface_hub import ModelCard

    written = []
    for d, kind, rnd, lora in model_dirs(run_dir):
        ModelCard(card_text(cfg, results, kind, rnd, lora)).save(d / "README.md")
        written.append(d / "README.md")
    return written
