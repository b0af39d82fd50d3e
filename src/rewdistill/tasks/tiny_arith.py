"""tiny-arith: GSM8K-like multi-step word problems, generated from a seed.

A question is a short story of 2-4 add/subtract steps; the gold worked solution writes one equation
per step and ends with `#### N`, like GSM8K: the `sequential` style of `base.STYLES`. The shipped teacher
learned that gold path first and then the three others, `grouped`, `gains_first` and `net`, which reach the
same answer through different intermediate numbers (see `base.solution_lines` and models/zoo/PROVENANCE.md).
"""
from __future__ import annotations

import random
import re

from rewdistill.tasks.base import Example, Task, generated_splits, solution_lines

NAMES = ["Mia", "Tom", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Eli", "Amy", "Ben", "Kim"]
ITEMS = ["apples", "pens", "coins", "books", "cards", "shells", "stickers", "marbles", "cookies", "stamps"]
GAIN = ["buys {n} more {item}", "finds {n} more {item}", "gets {n} {item} from a friend", "wins {n} {item}"]
LOSS = ["gives away {n} {item}", "loses {n} {item}", "sells {n} {item}", "uses {n} {item}"]
_ANSWER_RE = re.compile(r"####\s*(-?[\d,]+)")


def make_problem(rng: random.Random, max_steps: int = 4, max_operand: int = 20,
                 style: str = "sequential") -> tuple[str, str, str]:
    """One problem: (question, worked solution in `style` (see `solution_lines`), answer)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start = value = rng.randint(2, max_operand)
    sentences = [f"{name} has {value} {item}."]
    ops: list[int] = []
    for _ in range(rng.randint(2, max_steps)):
        n = rng.randint(1, max_operand)
        if rng.random() < 0.5 and value - n >= 0:
            sentences.append(f"Then {name} " + rng.choice(LOSS).format(n=n, item=item) + ".")
            ops.append(-n)
        else:
            sentences.append(f"Then {name} " + rng.choice(GAIN).format(n=n, item=item) + ".")
            ops.append(n)
        value += ops[-1]
    sentences.append(f"How many {item} does {name} have now?")
    lines = [f"{name} starts with {start} {item}.", *solution_lines(start, ops, style), f"#### {value}"]
    return " ".join(sentences), "\n".join(lines), str(value)


def generate_splits(seed: int = 0) -> dict[str, list[Example]]:
    """Fixed, disjoint train / validation / test splits from one seed."""
    return generated_splits(lambda rng: (*make_problem(rng), []), random.Random(seed))


def extract_hash_answer(response: str) -> str | None:
    """The number after the last `####`, commas removed; None when there is none."""
    found = _ANSWER_RE.findall(response)
    if not found:
        return None
    num = found[-1].replace(",", "")
    return str(int(num)) if num.lstrip("-").isdigit() else None


class TinyArith(Task):
    name = "tiny-arith"

    def __init__(self, data_seed: int = 0):
        self._splits = generate_splits(data_seed)

    def load(self, split: str) -> list[Example]:
        return self._splits[split]

    def prompt(self, ex: Example) -> str:
        return f"Question: {ex.question}\nAnswer:"

    def extract(self, response: str, ex: Example) -> str | None:
        return extract_hash_answer(response)
