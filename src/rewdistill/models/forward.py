"""Forward passes that every layer above needs: per-token log-probs of a causal LM and the scalar scores of a
reward model (a sequence-classification head), on padded batches."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rewdistill.algo.losses import entropy_from_logits


def pad_right(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention_mask), both (B, T)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` uses them. (B, T) -> (B, T)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model, ids, mask, start: int, temperature: float = 1.0, with_entropy: bool = False):
    """Log-probs of ids[:, start:] under `model` given everything before. ids, mask: (B, P+T) -> (B, T)."""
    keep = ids.shape[1] - start + 1  # the head runs only where it predicts a response token (and one more)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), logits_to_keep=keep).logits
    logits = logits[:, :-1].float() / temperature  # (B, T, V) predictions of ids[:, start:]
    logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, start:, None]).squeeze(-1)  # (B, T)
    if not with_entropy:
        return logp
    return logp, entropy_from_logits(logits)


def token_scores(model, ids, mask) -> torch.Tensor:
    """Per-position scalar outputs of a sequence-classification model (its head on every hidden state).

    (B, T) -> (B, T). The reward model's score of a sequence is the value at its last real token.
    """
    # through the (possibly DDP-wrapped) model's own forward, so that gradient synchronisation sees it
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), output_hidden_states=True)
    head = getattr(model, "module", model).score
    return head(out.hidden_states[-1]).squeeze(-1).float()  # hidden_states[-1]: after the final norm


def last_token_scores(model, ids, mask) -> torch.Tensor:
    """Score of each right-padded sequence at its last real token. (B, T) -> (B,)."""
    scores = token_scores(model, ids, mask)  # (B, T)
    last = mask.long().sum(1) - 1  # (B,)
    return scores[torch.arange(len(ids)), last]


@torch.no_grad()
def continuation_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                          batch_size: int = 64) -> list[list[float]]:
    """Log-prob of each response token given its prompt and the response tokens before it (one forward per batch
    of right-padded prompt + response sequences). Returns one list per response, len(response) long."""
    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = []
    for lo in range(0, len(prompts), batch_size):
        ps, rs = prompts[lo : lo + batch_size], responses[lo : lo + batch_size]
        ids, mask = pad_right([p + r for p, r in zip(ps, rs)], pad_id)  # (b, L)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits.float()
        logp = torch.gather(F.log_softmax(logits[:, :-1], -1), 2, ids[:, 1:, None]).squeeze(-1)  # (b, L-1)
        for b, (p, r) in enumerate(zip(ps, rs)):
            out.append(logp[b, len(p) - 1 : len(p) - 1 + len(r)].tolist())  # predicts ids[len(p) + t]
    return out


@torch.no_grad()
def score_sequences(model, seqs: list[list[int]], pad_id: int, batch_size: int = 128) -> list[float]:
    """Reward-model logits for token sequences (prompt + response)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for lo in range(0, len(seqs), batch_size):
        ids, mask = pad_right(seqs[lo : lo + batch_size], pad_id)
        out += last_token_scores(model, ids.to(device), mask.to(device)).tolist()
    return out
