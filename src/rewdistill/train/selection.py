"""Choosing the RL checkpoint without gold: the policy's greedy agreement with the teacher's pseudo-labels on
held-out selection questions, checked every few steps.

`Selection` keeps the history of checks and decides two things: which check is best (highest agreement; the
earliest on ties), and whether to stop early — when the last `patience` checks all agree less than the best while
the rollout reward is above its value at the best (the reward model is being climbed, the answers get worse).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Selection:
    patience: int = 0  # early stop after this many bad checks in a row; 0 = never
    steps: list[int] = field(default_factory=list)  # step of each check
    agreement: list[float] = field(default_factory=list)  # the check's score (rl.select_metric) at each check
    reward: list[float | None] = field(default_factory=list)  # mean rollout reward since the previous check

    def add(self, step: int, agreement: float, reward: float | None) -> bool:
        """Record a check; True when it is the new best."""
        self.steps.append(step)
        self.agreement.append(agreement)
        self.reward.append(reward)
        return self.best == len(self.steps) - 1

    @property
    def best(self) -> int:
        """Index of the best check: the highest agreement, the earliest of equals."""
        return max(range(len(self.agreement)), key=lambda i: (self.agreement[i], -i))

    def bad(self, i: int) -> bool:
        """Check i agrees less than the best while its reward is above the reward at the best."""
        b = self.best
        rb, ri = self.reward[b], self.reward[i]  # None at the check before RL: any reward since then counts as a rise
        return self.agreement[i] < self.agreement[b] and ri is not None and (rb is None or ri > rb)

    def should_stop(self) -> bool:
        last = range(len(self.steps) - self.patience, len(self.steps))
        return self.patience > 0 and len(self.steps) > self.patience and all(self.bad(i) for i in last)

    def summary(self, select: str, last_step: int, stopped: bool = False, metric: str = "agreement") -> dict:
        b = self.best
        kept = self.steps[b] if select == "best" else last_step
        if select == "last":
            why = f"rl.select last: the last step's policy (the best {metric} was at step {self.steps[b]})"
        elif kept == last_step:
            why = f"the last step's policy has the best {metric} ({self.agreement[b]:.1%})"
        else:
            why = (f"step {kept} scored best on the selection check ({metric} {self.agreement[b]:.1%}, last check "
                   f"{self.agreement[-1]:.1%})")
        return {"select": select, "metric": metric, "kept_step": kept, "best_step": self.steps[b], "why": why,
                "stopped_early": stopped, "steps": self.steps, "agreement": self.agreement,
                "reward": self.reward}
