"""`rewdistill grade`: score responses written by any tool against gold answers, with our extractors.

Each input row has `response` and the gold `answer` (GSM8K: a solution ending in `#### N` or a number;
MMLU-Pro: a letter, with `options` when present so that only existing letters count). The output keeps every
input field and adds `extracted` (null when unparsable) and `correct`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rewdistill.tasks.answers import LETTERS, extract_letter, extract_number
from rewdistill.tasks.real import check_choice
from rewdistill.tasks.rows import BadRows, DataError, Row, parse_all, read_rows, require
from rewdistill.tasks.tiny_arith import extract_hash_answer
from rewdistill.tasks.tiny_choice import extract_choice

GRADE_TASKS = ("gsm8k", "mmlu-pro", "tiny-arith", "tiny-choice")


def grade_row(task: str, row: Row, answer_mode: str = "auto") -> dict:
    """{**row, extracted, correct} for one row; a DataError names the row when its fields are unusable."""
    response = require(row, "response", str)
    if task in ("gsm8k", "tiny-arith"):
        gold = extract_number(str(require(row, "answer", (str, int, float))), "auto")
        if gold is None:
            raise DataError(f"{row.where}: field 'answer' has no final number")
        got = extract_number(response, answer_mode) if task == "gsm8k" else extract_hash_answer(response)
    else:
        answer = require(row, "answer", (str, int))
        if row.data.get("options") is not None:
            options, gold = check_choice(row, row.data["options"], answer)
            n = len(options)
        else:
            n = len(LETTERS)
            _, gold = check_choice(row, [""] * n, answer)
        got = extract_letter(response, n) if task == "mmlu-pro" else extract_choice(response, n)
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
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in graded:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    n_correct = sum(r["correct"] for r in graded)
    return {"task": task, "file": str(path), "out": str(out), "rows": len(graded), "correct": n_correct,
            "accuracy": n_correct / len(graded), "unparsable": sum(r["extracted"] is None for r in graded),
            "bad_rows_skipped": bad.count}
