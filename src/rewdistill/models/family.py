"""Which models the hand-written forwards handle (the fast sampler's decode loop, `models.suffix`): the Llama
family (Llama, Mistral, Qwen2, Qwen3) with rotary positions and full attention in every layer."""
from __future__ import annotations

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


def base_model(model):
    """The HF *ForCausalLM under a PEFT wrapper (LoRA layers stay in place and are applied by the modules)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def full_attention_family(cfg) -> bool:
    """A config of a supported type (rotary positions) with full attention in every layer (no sliding window)."""
    if cfg is None or getattr(cfg, "model_type", None) not in SUPPORTED:
        return False
    if (getattr(cfg, "use_sliding_window", False)
            or (cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None))):
        return False
    types = getattr(cfg, "layer_types", None)
    return not types or all(t == "full_attention" for t in types)


def supports(model, head: str = "lm_head") -> bool:
    """True when the fast path reproduces this model's forward: a supported type with full attention everywhere, its
    decoder at `.model` and its head at `.<head>` (lm_head; score: a sequence-classification model)."""
    m = base_model(model)
    if not full_attention_family(getattr(m, "config", None)):
        return False
    layers = getattr(getattr(m, "model", None), "layers", None)
    return bool(layers) and hasattr(m.model, "rotary_emb") and hasattr(m, head)


RMS_NAMES = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")
