"""`rewdistill grade`: score responses written by any tool against gold answers, with each task's own `extract`.

Each input row has `response` and the gold `answer` (GSM8K: a solution ending in `#### N` or a number;
MMLU-Pro: a letter, with `options` when present so that only existing letters count). The output keeps every
input field and adds `extracted` (null when unparsable) and `correct`.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from rewdistill.io import write_jsonl
from rewdistill.tasks import Task, get_task
from rewdistill.tasks.answers import LETTERS, extract_number
from rewdistill.tasks.base import Example
from rewdistill.tasks.real import check_choice
from rewdistill.tasks.rows import BadRows, DataError, Row, parse_all, read_rows, require

# task -> what its gold `answer` is: a final number, or a letter among the options. The response's answer is
# extracted by the task's own `extract`, exactly as in training and evaluation.
GOLD_KIND = {"gsm8k": "number", "mmlu-pro": "letter", "tiny-arith": "number", "tiny-choice": "letter"}
GRADE_TASKS = tuple(GOLD_KIND)


@cache
def grading_task(task: str, answer_mode: str = "auto") -> Task:
    """The task whose `extract` grades responses (`answer_mode` reaches gsm8k's extractor)."""
    return get_task(task, answer_mode=answer_mode)


def grade_row(task: str, row: Row, answer_mode: str = "auto") -> dict:
    """{**row, extracted, correct} for one row; a DataError names the row when its fields are unusable."""
    response = require(row, "response", str)
    options: list[str] = []
    if GOLD_KIND[task] == "number":
        gold = extract_number(str(require(row, "answer", (str, int, float))), "auto")
        if gold is None:
            raise DataError(f"{row.where}: field 'answer' has no final number")
    else:
        answer = require(row, "answer", (str, int))
        given = row.data.get("options")
        # without options every letter may be the answer (the option texts are not needed to extract one)
        options, gold = check_choice(row, given if given is not None else [""] * len(LETTERS), answer)
    ex = Example(qid=row.where, question="", answer=gold, options=list(options))
    got = grading_task(task, answer_mode).extract(response, ex)
    return {**row.data, "extracted": got, "correct": got is not None and got == gold}


def grade_file(task: str, path: Path, out: Path | None = None, answer_mode: str = "auto",
               bad_rows: str = "fail") -> dict:
    """Grade every row of `path`, write `out` (default `<input>.graded.jsonl`), return the summary."""
    if task not in GRADE_TASKS:
        raise DataError(f"grade: unknown task {task!r}; choose one of {', '.join(GRADE_TASKS)}")
    path = Path(path)
    out = Path(out) if out else path.with_name(path.name.removesuffix(".jsonl") + ".graded.jsonl")
    if out.resolve() == path.resolve():
        raise DataError(f"--out {out} is the input file; choose another path (the input is never overwritten)")
    bad = BadRows()
    graded = parse_all(read_rows(path, bad_rows, bad), lambda r: grade_row(task, r, answer_mode), bad_rows, bad)
    if not graded:
        raise DataError(f"{path}: no gradable rows ({bad.count} bad); each row needs 'response' and 'answer'")
    write_jsonl(out, graded, ensure_ascii=False)  # atomically: a temporary file, then a rename
    n_correct = sum(r["correct"] for r in graded)
    return {"task": task, "file": str(path), "out": str(out), "rows": len(graded), "correct": n_correct,
            "accuracy": n_correct / len(graded), "unparsable": sum(r["extracted"] is None for r in graded),
            "bad_rows_skipped": bad.count}
