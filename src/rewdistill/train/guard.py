"""The non-finite guard: a step whose loss, reward or advantage is NaN / inf is skipped and counted; after
`max_skips` consecutive skipped steps the stage stops with a clear error (the last checkpoint stays intact)."""
from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite steps."""


def all_finite(*xs) -> bool:
    """True when every tensor / float in `xs` is finite."""
    for x in xs:
        t = x if isinstance(x, torch.Tensor) else torch.tensor(float(x))
        if not bool(torch.isfinite(t).all()):
            return False
    return True


class Guard:
    def __init__(self, stage: str, max_skips: int, hint: str):
        self.stage, self.max_skips, self.hint = stage, max_skips, hint
        self.skipped = self.run = 0

    def record(self, ok: bool) -> None:
        """Count one optimiser step, good or skipped; raise after `max_skips` skipped in a row."""
        if ok:
            self.run = 0
            return
        self.skipped += 1
        self.run += 1
        if self.run >= self.max_skips:
            raise NonFiniteError(f"{self.stage}: {self.run} consecutive steps had a non-finite loss, reward or "
                                 f"advantage and were skipped; stopping (the last checkpoint is kept). {self.hint}")
