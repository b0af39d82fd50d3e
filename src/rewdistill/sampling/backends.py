"""Local sampling backends behind one call: `sampler.generate(prompts, temperature, n, max_new_tokens, seed, desc)
-> list[Generation]` (n responses per prompt, in prompt order), and `sampler.token_logprobs(prompts, responses)` (token
id lists -> each response token's log-prob given what precedes it: the teacher's side of on-policy distillation). The
OpenAI-compatible server backend (`openai_api.OpenAISampler`) answers the same calls.

HFSampler: a transformers model in process (the fast engine or `generate`). VLLMSampler: vLLM, imported only when
chosen. Both take plain arguments; `stages.common.Ctx` builds them from the config.
"""
from __future__ import annotations

from rewdistill.models.forward import continuation_logprobs
from rewdistill.models.prompt import PromptFormat
from rewdistill.sampling.hf import Generation, generate
from rewdistill.sampling.openai_api import BackendError


class HFSampler:
    def __init__(self, model, fmt: PromptFormat, batch_size: int, engine: str = "fast"):
        self.model, self.fmt, self.batch_size, self.engine = model, fmt, batch_size, engine

    def generate(self, prompts, temperature, n=1, max_new_tokens=64, seed=0, desc=None) -> list[Generation]:
        return generate(self.model, self.fmt, prompts, temperature, n, max_new_tokens, self.batch_size, seed, desc,
                        engine=self.engine)

    def token_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        return continuation_logprobs(self.model, prompts, responses, self.fmt.pad_id, self.batch_size)


class VLLMSampler:
    """vLLM offline inference; prompts go through the prompt format's chat template when the run uses one."""

    def __init__(self, path: str, fmt: PromptFormat, cfg, dtype: str, trust_remote_code: bool):
        try:
            import vllm
        except ImportError:
            raise BackendError("models.teacher_backend vllm needs vLLM: `pip install vllm` on a CUDA machine, or "
                               "use teacher_backend hf / openai") from None
        self.vllm, self.fmt = vllm, fmt
        self.llm = vllm.LLM(model=path, tensor_parallel_size=cfg.tensor_parallel_size, dtype=dtype,
                            gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
                            trust_remote_code=trust_remote_code)

    def generate(self, prompts, temperature, n=1, max_new_tokens=64, seed=0, desc=None) -> list[Generation]:
        params = self.vllm.SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
        outs = self.llm.generate([self.fmt.text(p) for p in prompts], params, use_tqdm=desc is not None)
        return [Generation(i, temperature, c.text, list(c.token_ids), c.finish_reason != "length")
                for i, o in enumerate(outs) for c in o.outputs]

    def token_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """vLLM's prompt_logprobs over prompt + response (one generated token, discarded)."""
        params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        inputs = [{"prompt_token_ids": p + r} for p, r in zip(prompts, responses)]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        rows = []
        for o, p, r in zip(outs, prompts, responses):
            lps = o.prompt_logprobs  # one dict {token id: Logprob} per prompt position, None at position 0
            rows.append([lps[len(p) + t][tok].logprob for t, tok in enumerate(r)])
        return rows
