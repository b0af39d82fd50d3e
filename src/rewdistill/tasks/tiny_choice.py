"""tiny-choice: MMLU-Pro-like ten-option questions (A-J), generated from a seed.

Each question asks for the value of a short add/subtract expression (2-3 steps); the ten options are
the numbers of the answer's decade in order, so every distractor is a near miss and the letter of a
value is its last digit (A=0 .. J=9): a tiny model can answer without learning to search the option
list, which models of a few million parameters learn only slowly. The worked solution reasons in one
short sentence per step and ends with `The answer is (X)`.
"""
from __future__ import annotations

import random
import re

from rewdistill.tasks.base import Example, Task, generated_splits, solution_lines

LETTERS = "ABCDEFGHIJ"
_ANSWER_RE = re.compile(r"answer is \(?([A-J])\)?")


def make_problem(rng: random.Random, max_operand: int = 20,
                 style: str = "sequential") -> tuple[str, str, str, list[str]]:
    """One problem: (question text with options, worked solution in `style`, answer letter, option texts)."""
    start = value = rng.randint(2, max_operand)
    expr, ops = str(value), []
    for _ in range(rng.randint(2, 3)):
        n = rng.randint(1, max_operand)
        if rng.random() < 0.5 and value - n >= 0:
            expr, value = f"{expr} - {n}", value - n
            ops.append(-n)
        else:
            expr, value = f"{expr} + {n}", value + n
            ops.append(n)
    texts = [str(10 * (value // 10) + i) for i in range(10)]  # the answer's decade, in order
    letter = LETTERS[value % 10]
    opt_lines = "\n".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(texts))
    question = f"What is {expr}?\nOptions:\n{opt_lines}"
    steps = " ".join(line + "." for line in solution_lines(start, ops, style))
    solution = f"{steps} {value} is ({letter}). The answer is ({letter})."
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
