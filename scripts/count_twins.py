"""Test-split hygiene of the shipped zoo: tiny-arith test (and validation) problems with an *arithmetic twin* in a
training stream of the teacher or of the student base, and the teacher's test accuracy without them.

A twin has the same start value and the same signed steps as the test problem, with any names, items and verbs:
the same arithmetic the model may have memorised, even though the question text (which `make_zoo.py` bans) differs.

    python scripts/count_twins.py [--out benchmarks/results/zoo_twins.json]

The streams are replayed with `make_zoo.py`'s own generators and seeds, with the recipe's defaults as
PROVENANCE.md records them: the teacher's warm-up (800 steps x 64, mix 0.5, sequential), its checked phase up to
the chosen step 435 (x 64; the mix starts at 0.5 and was rebalanced after each check from accuracies that were
not kept, so this phase is replayed at 0.5: an estimate), and the student base (800 x 64 of `pretrain_texts`,
which shows questions without solutions). Exact-text overlap is also counted (it must be zero).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_zoo  # noqa: E402

from rewdistill.models.load import load_causal_lm, load_prompt_format  # noqa: E402
from rewdistill.sampling.hf import generate  # noqa: E402
from rewdistill.tasks import get_task  # noqa: E402
from rewdistill.tasks.tiny_arith import LOSS  # noqa: E402

LOSS_VERBS = tuple(t.split(" {n}")[0] for t in LOSS)  # "gives away", "loses", "sells", "uses"


def signature(question: str) -> tuple[int, ...] | None:
    """(start, +/-n, ...) of a tiny-arith question; None for anything else (a tiny-choice question)."""
    sentences = re.split(r"(?<=\.) ", question)
    first = re.match(r"\w+ has (\d+) \w+\.$", sentences[0])
    if not first:
        return None
    sig = [int(first.group(1))]
    for s in sentences[1:]:
        if not s.startswith("Then "):
            break
        n = int(re.search(r"\d+", s).group())
        sig.append(-n if any(f" {v} " in s for v in LOSS_VERBS) else n)
    return tuple(sig)


def stream_questions(gen, n_pairs: int) -> list[str]:
    """The question of each of the next n_pairs (prompt, response) pairs of a make_zoo stream."""
    out = []
    for _ in range(n_pairs):
        prompt, _ = next(gen)
        out.append(prompt.split("\n")[0].removeprefix("Question: "))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/zoo_twins.json")
    ap.add_argument("--warm-steps", type=int, default=800)
    ap.add_argument("--teacher-steps", type=int, default=435)
    ap.add_argument("--student-steps", type=int, default=800)
    args = ap.parse_args()
    banned = make_zoo.split_questions()
    make_zoo.selection_sets(600, banned)  # the recipe bans its selection set before any stream is drawn
    streams = {
        "teacher_warmup": stream_questions(make_zoo.fresh_problems(random.Random(5), set(banned), {"arith": 0.5},
                                                                   ["sequential"]), args.warm_steps * 64),
        "teacher_checked_phase (mix 0.5: estimate)": stream_questions(
            make_zoo.fresh_problems(random.Random(2), set(banned), {"arith": 0.5}), args.teacher_steps * 64),
    }
    student = make_zoo.pretrain_texts(random.Random(3), make_zoo.split_questions())
    streams["student_base (questions only)"] = [
        q for q in (p.split("\n")[0].removeprefix("Question: ") for p, _ in (next(student) for _ in
                                                                                range(args.student_steps * 64)))
        if signature(q) is not None]
    sigs = {name: {signature(q) for q in qs} - {None} for name, qs in streams.items()}
    texts = {name: set(qs) for name, qs in streams.items()}
    task = get_task("tiny-arith")
    report = {"command": "python scripts/count_twins.py", "teacher": "zoo:teacher",
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=ROOT).stdout.strip(),
              "stream_sizes": {name: len(qs) for name, qs in streams.items()},
              "stream_arith_problems": {name: len(s) for name, s in sigs.items()}, "splits": {}}
    twin_free: dict[str, list] = {}
    for split in ["test", "validation"]:
        exs = task.load(split)
        row = {"n": len(exs)}
        any_twin = set()
        for name in streams:
            hit = {e.qid for e in exs if signature(e.question) in sigs[name]}
            row[f"twins_in_{name}"] = len(hit)
            row[f"exact_text_in_{name}"] = sum(e.question in texts[name] for e in exs)
            any_twin |= hit
        row["with_any_twin"] = len(any_twin)
        by_steps = {}
        for e in exs:
            k = len(signature(e.question)) - 1
            by_steps.setdefault(k, [0, 0])
            by_steps[k][0] += 1
            by_steps[k][1] += e.qid in any_twin
        row["by_number_of_steps: [problems, with a twin]"] = {str(k): v for k, v in sorted(by_steps.items())}
        report["splits"][split] = row
        twin_free[split] = [e for e in exs if e.qid not in any_twin]
    model, fmt = load_causal_lm("zoo:teacher"), load_prompt_format("zoo:teacher")
    exs = task.load("test")
    gens = generate(model, fmt, [task.prompt(e) for e in exs], 0.0, 1, 64, 200)
    correct = {exs[g.prompt_index].qid: task.is_correct(g.text, exs[g.prompt_index]) for g in gens}
    free = {e.qid for e in twin_free["test"]}
    report["teacher_test_greedy"] = {
        "all": sum(correct.values()) / len(exs),
        "twin_free": sum(correct[q] for q in free) / max(1, len(free)), "n_twin_free": len(free),
        "with_twin": sum(c for q, c in correct.items() if q not in free) / max(1, len(exs) - len(free)),
    }
    steps_of = {e.qid: len(signature(e.question)) - 1 for e in exs}
    by = {}
    for q, c in correct.items():  # twins are mostly 2-step (easy) problems: compare within a step count
        cell = by.setdefault(str(steps_of[q]), {"twin": [0, 0], "no_twin": [0, 0]})["no_twin" if q in free else "twin"]
        cell[0] += c
        cell[1] += 1
    report["teacher_test_greedy"]["by_number_of_steps: correct / n"] = by
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
