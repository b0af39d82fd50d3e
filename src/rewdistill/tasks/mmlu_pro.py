"""MMLU-Pro (TIGER-Lab/MMLU-Pro), from the hub or local files with the same schema.

Questions have 1 to 10 options (A..J); only the letters that exist are used. The prompt is the official
zero-shot chain-of-thought form; extraction is the official cascade (`tasks/answers.extract_letter`), and an
unparsable response counts as wrong (no random guess). MMLU-Pro ships only `test` (and a 70-row few-shot
`validation`), so our train / validation / test are carved from `test` (see `tasks/real.py`).
"""
from __future__ import annotations

from rewdistill.tasks.answers import extract_letter
from rewdistill.tasks.base import Example
from rewdistill.tasks.real import FileTask, check_choice, format_options, row_id
from rewdistill.tasks.rows import Row, require


class MMLUPro(FileTask):
    name = "mmlu-pro"
    hub = ("TIGER-Lab/MMLU-Pro", None)
    hub_splits = {"test": "test"}

    def parse(self, row: Row) -> Example:
        question = require(row, "question", str)
        options, letter = check_choice(row, require(row, "options", list), require(row, "answer", (str, int)))
        category = row.data.get("category") or "general knowledge"
        return Example(qid=row_id(row, "question_id"), question=question, answer=letter,
                       solution=str(row.data.get("cot_content") or ""), options=options, meta={"category": category})

    def prompt(self, ex: Example) -> str:
        subject = str(ex.meta.get("category", "general knowledge")).replace("_", " ")
        return (f"The following is a multiple choice question about {subject}. Think step by step and then finish "
                f"your answer with \"the answer is (X)\" where X is the correct letter choice.\n\n"
                f"Question: {ex.question}\nOptions:\n{format_options(ex.options)}\nAnswer: Let's think step by step.")

    def extract(self, response: str, ex: Example) -> str | None:
        return extract_letter(response, len(ex.options))
