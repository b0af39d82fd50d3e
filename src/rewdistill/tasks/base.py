"""What every task provides: questions (with and without gold), a prompt, answer extraction and grading. No models
here."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    """A question as the training stages see it: what is asked, never its gold answer."""

    qid: str
    question: str  # the question text shown to the model (for choice tasks, options included)
    options: tuple[str, ...] = ()  # option texts for choice tasks, A.. in order
    meta: dict = field(default_factory=dict)  # e.g. MMLU-Pro's category (used in the prompt)


@dataclass
class Example:
    """A question with its gold answer: read only by evaluation, diagnostics and the labelled `gold` oracle."""

    qid: str
    question: str  # the question text shown to the model (for choice tasks, options included)
    answer: str  # gold final answer, normalised
    solution: str = ""  # gold worked solution; used only to build the shipped tiny models
    options: list[str] = field(default_factory=list)  # option texts for choice tasks, A.. in order
    meta: dict = field(default_factory=dict)  # e.g. MMLU-Pro's category (used in the prompt)

    def without_gold(self) -> Question:
        return Question(self.qid, self.question, tuple(self.options), dict(self.meta))


class Task:
    """A task: load splits, format prompts, extract final answers. Subclasses override the four methods."""

    name = "base"

    def load(self, split: str) -> list[Example]:
        """The split's examples WITH gold answers: for evaluation, diagnostics and the `gold` oracle only."""
        raise NotImplementedError

    def questions(self, split: str) -> list[Question]:
        """The split's questions without gold answers: what every training stage works with."""
        return [e.without_gold() for e in self.load(split)]

    def prompt(self, q: Question | Example) -> str:
        raise NotImplementedError

    def extract(self, response: str, q: Question | Example) -> str | None:
        """Final answer in `response`, normalised like `Example.answer`, or None when unparsable. Reads only what
        is asked (e.g. the number of options), never a gold answer."""
        raise NotImplementedError

    def is_correct(self, response: str, ex: Example) -> bool:
        got = self.extract(response, ex)
        return got is not None and got == ex.answer


SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 300}


def generated_splits(make, rng) -> dict[str, list[Example]]:
    """Fixed, disjoint train / validation / test splits of a generated task.

    `make(rng)` returns (question, solution, answer, options); a question already drawn is skipped.
    """
    seen: set[str] = set()
    out: dict[str, list[Example]] = {}
    for split, size in SPLIT_SIZES.items():
        rows: list[Example] = []
        while len(rows) < size:
            q, sol, ans, opts = make(rng)
            if q not in seen:
                seen.add(q)
                rows.append(Example(qid=f"{split}-{len(rows)}", question=q, answer=ans, solution=sol, options=opts))
        out[split] = rows
    return out


STYLES = ("sequential", "grouped", "gains_first", "net")


def solution_lines(start: int, ops: list[int], style: str) -> list[str]:
    """Equations that add the signed amounts `ops` to `start`, one per line.

    Several valid paths, with different intermediate numbers, so that a model's errors differ between paths
    as a real LLM's do (majority voting over samples then beats one greedy answer):
    sequential: one equation per step, in order (the gold style);
    grouped: total the gains, total the losses, then apply both;
    gains_first: one equation per step, the gains first, then the losses;
    net: sum the signed changes into one net change, then apply it.
    """
    if style not in STYLES:
        raise ValueError(f"unknown solution style {style!r}; choose from {', '.join(STYLES)}")
    lines: list[str] = []
    if style in ("sequential", "gains_first"):
        order = ops if style == "sequential" else [n for n in ops if n > 0] + [n for n in ops if n < 0]
        value = start
        for n in order:
            lines.append(f"{value} {'+' if n > 0 else '-'} {abs(n)} = {value + n}")
            value += n
        return lines
    if style == "net":
        net = sum(ops)
        if len(ops) > 1:
            terms = str(ops[0]) + "".join(f" {'+' if n > 0 else '-'} {abs(n)}" for n in ops[1:])
            lines.append(f"Change: {terms} = {net}")
        lines.append(f"{start} {'+' if net >= 0 else '-'} {abs(net)} = {start + net}")
        return lines
    gains, losses = [n for n in ops if n > 0], [-n for n in ops if n < 0]
    value = start
    for label, group, sign in (("Gained", gains, 1), ("Lost", losses, -1)):
        if not group:
            continue
        total = sum(group)
        if len(group) > 1:
            lines.append(f"{label}: {' + '.join(map(str, group))} = {total}")
        lines.append(f"{value} {'+' if sign > 0 else '-'} {total} = {value + sign * total}")
        value += sign * total
    return lines
