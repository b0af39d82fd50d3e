"""The teacher's sampling backends behind one call: `sampler.generate(prompts, temperature, n, max_new_tokens,
seed, desc) -> list[Generation]` (n responses per prompt, in prompt order).

hf: transformers, in process (default). vllm: imported only when chosen. openai: any OpenAI-compatible server.
"""
from __future__ import annotations

from pathlib import Path

from rewdistill.sampling.hf import Generation, generate
from rewdistill.sampling.openai_api import BackendError, OpenAISampler


class HFSampler:
    def __init__(self, model, tokenizer, batch_size: int, engine: str = "fast"):
        self.model, self.tokenizer, self.batch_size, self.engine = model, tokenizer, batch_size, engine

    def generate(self, prompts, temperature, n=1, max_new_tokens=64, seed=0, desc=None) -> list[Generation]:
        return generate(self.model, self.tokenizer, prompts, temperature, n, max_new_tokens, self.batch_size, seed, desc,
                        engine=self.engine)


class VLLMSampler:
    """vLLM offline inference; prompts go through the tokenizer's chat template when the run uses one."""

    def __init__(self, path: str, tokenizer, cfg, dtype: str, trust_remote_code: bool):
        try:
            import vllm
        except ImportError:
            raise BackendError("models.teacher_backend vllm needs vLLM: `pip install vllm` on a CUDA machine, or "
                               "use teacher_backend hf / openai") from None
        from rewdistill.train.common import uses_chat

        self.vllm, self.tokenizer, self.chat = vllm, tokenizer, uses_chat(tokenizer)
        self.llm = vllm.LLM(model=path, tensor_parallel_size=cfg.tensor_parallel_size, dtype=dtype,
                            gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
                            trust_remote_code=trust_remote_code)

    def generate(self, prompts, temperature, n=1, max_new_tokens=64, seed=0, desc=None) -> list[Generation]:
        if self.chat:
            prompts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                          add_generation_prompt=True) for p in prompts]
        params = self.vllm.SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
        outs = self.llm.generate(prompts, params, use_tqdm=desc is not None)
        return [Generation(i, temperature, c.text, list(c.token_ids), c.finish_reason != "length")
                for i, o in enumerate(outs) for c in o.outputs]


def teacher_sampler(ctx, batch_size: int, purpose: str = "samples"):
    """The configured backend for the teacher. `purpose` names the openai backend's resume cache in the run dir."""
    m = ctx.cfg.models
    if m.teacher_backend == "openai":
        return OpenAISampler(ctx.cfg.openai, m.teacher, Path(ctx.run_dir) / f"openai_{purpose}.jsonl")
    if m.teacher_backend == "vllm":
        from rewdistill.models.load import resolve

        dtype = "auto" if m.dtype == "auto" else m.dtype
        return VLLMSampler(resolve(m.teacher), ctx.tokenizer(m.teacher), ctx.cfg.vllm, dtype, m.trust_remote_code)
    return local_sampler(ctx, m.teacher, batch_size)


def local_sampler(ctx, model_path: str, batch_size: int) -> HFSampler:
    """A transformers sampler for a local model (the student; the teacher with the hf backend)."""
    from rewdistill.models.load import load_causal_lm

    m = ctx.cfg.models
    tok = ctx.tokenizer(model_path)  # first: a wrong path fails on the cheaper load
    model = load_causal_lm(model_path, ctx.device, m.dtype, m.trust_remote_code).eval()
    return HFSampler(model, tok, batch_size, m.sampler)
