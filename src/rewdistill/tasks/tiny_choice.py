"""tiny-choice: MMLU-Pro-like ten-option questions (A-J), generated from a seed.

Each question asks for the value of a short add/subtract expression; the nine distractors are nearby
numbers. The worked solution reasons in one short line per step and ends with `The answer is (X)`.
"""
from __future__ import annotations

import random
import re

from rewdistill.tasks.base import Example, Task, generated_splits

LETTERS = "ABCDEFGHIJ"
_ANSWER_RE = re.compile(r"answer is \(?([A-J])\)?")


def make_problem(rng: random.Random, max_operand: int = 20) -> tuple[str, str, str, list[str]]:
    """One problem: (question text with options, worked solution, answer letter, option texts)."""
    value = rng.randint(2, max_operand)
    expr, steps = str(value), []
    for _ in range(rng.randint(1, 2)):
        n = rng.randint(1, max_operand)
        if rng.random() < 0.5 and value - n >= 0:
            steps.append(f"{value} - {n} = {value - n}.")
            expr, value = f"{expr} - {n}", value - n
        else:
            steps.append(f"{value} + {n} = {value + n}.")
            expr, value = f"{expr} + {n}", value + n
    pool = [v for v in range(max(0, value - 12), value + 13) if v != value]
    options = rng.sample(pool, 9) + [value]
    rng.shuffle(options)
    letter = LETTERS[options.index(value)]
    texts = [str(o) for o in options]
    opt_lines = "\n".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(texts))
    question = f"What is {expr}?\nOptions:\n{opt_lines}"
    solution = " ".join(steps) + f" {value} is ({letter}). The answer is ({letter})."
    return question, solution, letter, texts


def generate_splits(seed: int = 0) -> dict[str, list[Example]]:
    """Fixed, disjoint train / validation / test splits from one seed."""
    return generated_splits(make_problem, random.Random(seed + 7919))


def extract_choice(response: str, n_options: int = 10) -> str | None:
    """The letter in the last `answer is (X)`, if it names an existing option; else None."""
    found = [m for m in _ANSWER_RE.findall(response) if m in LETTERS[:n_options]]
    return found[-1] if found else None


class TinyChoice(Task):
    name = "tiny-choice"

    def __init__(self, data_seed: int = 0):
        self._splits = generate_splits(data_seed)

    def load(self, split: str) -> list[Example]:
        return self._splits[split]

    def prompt(self, ex: Example) -> str:
        return f"Question: {ex.question}\nAnswer: Let's think step by step."

    def extract(self, response: str, ex: Example) -> str | None:
        return extract_choice(response, len(ex.options) or 10)
