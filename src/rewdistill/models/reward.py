"""Reward models of two kinds behind one interface (`reward_model.kind`).

- `scalar` (the paper): a sequence-classification head on a language model's last hidden state; the score is the
  head's logit at the sequence's last token. Saved as `AutoModelForSequenceClassification` (1 label).
- `likelihood`: the score is the language model's own judgement of the answer,
      r(x, y) = scale * (1/|y|) * sum_t log pi_phi(y_t | x, y_<t) + bias,
  pi_phi a causal LM (from the teacher by default) fine-tuned on the pseudo-labelled responses with the same BCE /
  Bradley-Terry losses applied to r, scale and bias two learned scalars. At initialisation it ranks answers as the
  teacher's likelihood does; training corrects it where the pseudo-labels disagree. Saved as a plain
  `AutoModelForCausalLM` directory whose config.json carries `reward_kind`, `reward_scale`, `reward_bias`.

`load_reward(path)` returns either; `score_pairs` and `rollout_scores` score with either.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rewdistill.models.family import full_attention_family
from rewdistill.models.forward import last_token_scores, position_ids
from rewdistill.models.packed import Packed, mean_per_pair, pack_pairs, packed_last_hidden, packed_logprobs
from rewdistill.models.suffix import suffix_last_scores, suffix_logprobs, usable

KINDS = ("scalar", "likelihood")


def mean_response_logprob(lm, ids: torch.Tensor, mask: torch.Tensor, resp: torch.Tensor,
                          suffix: bool = False) -> torch.Tensor:
    """Mean log-prob under `lm` of the tokens where `resp` is 1, each given everything before it.

    ids, mask, resp: (B, L), any padding side; resp marks response tokens (never position 0). Returns (B,).
    `suffix`: through `models.suffix` (the last layer and head only at the response) where it applies: right-padded
    rows, one contiguous response each, a Llama-family `lm` (`models.suffix.usable`); the same means to float
    rounding."""
    if suffix and bool(mask[:, 0].all()) and not bool(resp[:, 0].any()) and usable(lm):
        lengths = resp.sum(1)  # (B,)
        starts = resp.argmax(1)  # (B,) first response token
        logp, valid = suffix_logprobs(lm, ids, mask, starts, lengths)  # (B, R) each
        return logp.sum(1) / valid.sum(1).clamp(min=1)
    logits = lm(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits[:, :-1].float()
    logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(-1)  # (B, L-1): predicts ids[:, 1:]
    w = resp[:, 1:].to(logp.dtype)  # (B, L-1)
    return (logp * w).sum(1) / w.sum(1).clamp(min=1)


class LikelihoodRM(nn.Module):
    """r = scale * mean response-token log-prob under `lm` + bias (see the module docstring)."""

    def __init__(self, lm, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.lm = lm
        self.scale = nn.Parameter(torch.tensor([float(scale)]))  # (1,): FSDP shards no 0-d parameter
        self.bias = nn.Parameter(torch.tensor([float(bias)]))  # (1,)

    @property
    def config(self):
        return self.lm.config

    # the LM's embeddings and their tie, as an HF model shows them to engines: accelerate's FSDP 2 groups tied input /
    # output embeddings into one shard unit and re-ties them after loading (without these, training unties them)
    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def tie_weights(self, *args, **kwargs):
        return self.lm.tie_weights(*args, **kwargs)

    def forward(self, ids, mask=None, resp=None, suffix=False) -> torch.Tensor:  # -> (B,); `ids` may be Packed
        if isinstance(ids, Packed):
            return self.scale * mean_per_pair(packed_logprobs(self.lm, ids), ids) + self.bias
        return self.scale * mean_response_logprob(self.lm, ids, mask, resp, suffix) + self.bias

    def stamp(self, scale: float | None = None, bias: float | None = None) -> None:
        """Write kind, scale and bias (this module's own, or the given values: gathered from a sharded copy) into the
        LM's config, so that its saved directory is the whole reward model."""
        self.lm.config.reward_kind = "likelihood"
        self.lm.config.reward_scale = float(self.scale.detach()) if scale is None else scale
        self.lm.config.reward_bias = float(self.bias.detach()) if bias is None else bias


def is_likelihood(rm) -> bool:
    return isinstance(getattr(rm, "module", rm), LikelihoodRM)


def kind_of(path: str) -> str:
    """The kind of a saved reward model (a directory this package wrote, or any HF model: scalar)."""
    from transformers import AutoConfig

    from rewdistill.models.load import resolve

    try:
        return getattr(AutoConfig.from_pretrained(resolve(path)), "reward_kind", "scalar")
    except (OSError, ValueError):
        return "scalar"  # let the scalar loader give its one-line error


def load_reward(path: str, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
    """A saved reward model of either kind, on `device`."""
    from rewdistill.models.load import load_causal_lm, load_reward_model

    if kind_of(path) == "likelihood":
        lm = load_causal_lm(path, device, dtype, trust_remote_code)
        return LikelihoodRM(lm, lm.config.reward_scale, lm.config.reward_bias).to(device)
    return load_reward_model(path, device, dtype, trust_remote_code)


def pair_batch(pairs: list[tuple[list[int], list[int]]], pad: int):
    """Right-padded (ids, mask, resp) of prompt + response pairs, all (B, L); resp marks the response tokens."""
    width = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    resp = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, r) in enumerate(pairs):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        mask[i, : len(p) + len(r)] = 1
        resp[i, len(p) : len(p) + len(r)] = 1
    return ids, mask, resp


def batch_scores(rm, ids: torch.Tensor, mask: torch.Tensor, resp: torch.Tensor, suffix: bool = False) -> torch.Tensor:
    """Scores of a padded batch (with grad when enabled): (B, L) -> (B,). Scalar: the head at the last real token
    (right padding); with `suffix` the last layer only there where `models.suffix.usable` says it applies
    (`suffix_last_scores`); likelihood with `suffix`: `mean_response_logprob`'s suffix path."""
    if is_likelihood(rm):
        return rm(ids, mask, resp, suffix=suffix)
    if suffix and bool(mask[:, 0].all()) and usable(rm, "score"):  # right-padded rows (pair_batch): no holes
        return suffix_last_scores(rm, ids, mask)
    return last_token_scores(rm, ids, mask)


def packed_scores(rm, batch: Packed) -> torch.Tensor:
    """Scores of a packed batch (`models.packed`, with grad when enabled): (n_pairs,), the same as `batch_scores` on
    the pairs' padded rows."""
    if is_likelihood(rm):
        return rm(batch)
    return getattr(rm, "module", rm).score(packed_last_hidden(rm, batch)).squeeze(-1).float()


def packs(rm) -> bool:
    """Whether packing gives `rm`'s own scores: a rotary-position family with full attention (`models.family`) whose
    attention takes the block mask of a packed batch (`models.packed.block_mask`): SDPA or eager."""
    cfg = getattr(getattr(rm, "module", rm), "config", None)
    return full_attention_family(cfg) and getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")


@torch.no_grad()
def score_pairs(rm, pairs: list[tuple[list[int], list[int]]], pad: int, batch_size: int = 128,
                packed: bool = False, suffix: bool = False) -> list[float]:
    """Reward of each (prompt ids, response ids) pair. `packed` (where the model's attention allows): pairs grouped
    by prompt, each batch packed (`models.packed`: a prompt computed once for the responses that share a row), the
    same scores to float rounding; for scoring many responses per question (evaluation). `suffix`: as
    `batch_scores` (unpacked batches)."""
    rm.eval()
    device = next(rm.parameters()).device
    if packed and packs(rm) and all(p and r for p, r in pairs):  # packing needs every prompt and response non-empty
        order = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], i))  # a prompt's responses adjacent
        scores = [0.0] * len(pairs)
        for lo in range(0, len(order), batch_size):
            chunk = order[lo : lo + batch_size]
            got = packed_scores(rm, pack_pairs([pairs[i] for i in chunk], pad).to(device)).float().tolist()
            for i, sc in zip(chunk, got):
                scores[i] = sc
        return scores
    out: list[float] = []
    for lo in range(0, len(pairs), batch_size):
        ids, mask, resp = pair_batch(pairs[lo : lo + batch_size], pad)
        out += batch_scores(rm, ids.to(device), mask.to(device), resp.to(device), suffix).float().tolist()
    return out
