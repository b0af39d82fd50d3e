"""Dense (per-token) rewards from the teacher, as pure functions: on-policy distillation and its gate.

On-policy distillation (Agarwal et al. 2024, GKD; Gu et al. 2024, MiniLLM) rewards each token the student
sampled by how much more the teacher likes it: log p_teacher(y_t) - log p_student(y_t). Its sum over a response
is a one-sample estimate of -KL(student || teacher), so maximising it pulls the student onto its teacher.
"""
from __future__ import annotations

import torch


def teacher_kl_tokens(teacher_logp: torch.Tensor, student_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token reward log p_teacher - log p_student on the student's own tokens.

    teacher_logp, student_logp, mask: (B, T), response tokens only. Returns (B, T), zero on padding.
    """
    return (teacher_logp - student_logp) * mask


def vote_gate(share: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Weight of the teacher's per-token signal for a prompt, from the teacher's vote share on it.

    0 at or below `lo` (the votes split: trust the reward model), 1 at or above `hi` (the teacher is confident:
    follow its tokens), linear between. share: (B,) in [0, 1] -> (B,) in [0, 1].
    >>> vote_gate(torch.tensor([0.25, 0.5, 0.75, 1.0]), 0.5, 1.0).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    if hi <= lo:
        return (share >= hi).float()
    return ((share - lo) / (hi - lo)).clamp(0.0, 1.0)
