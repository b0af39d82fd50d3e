"""LoRA adapters through peft for the student (sft, rl) and the reward model: added before training, saved as an
adapter directory (`<name>_lora/`) and merged into a full `save_pretrained` model (`<name>/`) for the stages
after (and for anyone loading it with plain transformers)."""
from __future__ import annotations


def add_lora(model, cfg, task_type: str):
    """Wrap `model` (CAUSAL_LM or SEQ_CLS) with fresh LoRA adapters as configured in `cfg` (LoraCfg)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RuntimeError("lora needs peft: `pip install peft` (or `pip install rewdistill[lora]`)") from None
    target = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    config = LoraConfig(task_type=task_type, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                        target_modules=target)
    return get_peft_model(model, config)


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged_copy(model, whole: dict | None = None):
    """A plain transformers model with the adapters folded in; `model` itself keeps training unchanged. `whole`:
    the model's gathered state (under FSDP, whose sharded modules cannot be copied): folded into a fresh twin."""
    import copy

    if whole is None:
        return copy.deepcopy(model).merge_and_unload()
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = copy.deepcopy(model.peft_config["default"])
    auto = AutoModelForSequenceClassification if config.task_type == "SEQ_CLS" else AutoModelForCausalLM
    twin = get_peft_model(auto.from_config(model.get_base_model().config), config)
    twin.load_state_dict(whole)
    return twin.merge_and_unload()
