"""The user's own questions: JSONL/parquet rows with `question` and `answer` (and `options` for choice).

`task.answer_type` says how answers compare: `numeric` (numbers, compared numerically, GSM8K style: the
response ends with `#### N`), `choice` (a letter among the row's `options`, MMLU-Pro style) or `text`
(normalised exact match; pseudo-labels for text come from the LLM judge, `pseudo_label.method: judge`).
An optional `id` field names each question.
"""
from __future__ import annotations

from rewdistill.tasks.answers import extract_letter, extract_number, extract_text, normalize_number, normalize_text
from rewdistill.tasks.base import Example
from rewdistill.tasks.real import FileTask, check_choice, format_options, row_id
from rewdistill.tasks.rows import DataError, Row, require


class JsonlTask(FileTask):
    name = "jsonl"

    @property
    def answer_type(self) -> str:
        return self.opts.get("answer_type", "numeric")

    def parse(self, row: Row) -> Example:
        question = require(row, "question", str)
        kind = self.answer_type
        if kind == "choice":
            options, letter = check_choice(row, require(row, "options", list), require(row, "answer", (str, int)))
            return Example(qid=row_id(row, "id"), question=question, answer=letter, options=options)
        raw = require(row, "answer", (str, int, float))
        if kind == "numeric":
            answer = extract_number(str(raw), "auto") if isinstance(raw, str) else normalize_number(str(raw))
            if answer is None:
                raise DataError(f"{row.where}: field 'answer' is not a number ({str(raw)[:40]!r}); "
                                "use answer_type text")
        else:
            answer = normalize_text(str(raw))
            if not answer:
                raise DataError(f"{row.where}: field 'answer' is empty")
        return Example(qid=row_id(row, "id"), question=question, answer=answer, solution=str(raw))

    def prompt(self, ex: Example) -> str:
        kind = self.answer_type
        if kind == "choice":
            return (f"Question: {ex.question}\nOptions:\n{format_options(ex.options)}\nThink step by step and then "
                    "finish your answer with \"the answer is (X)\" where X is the correct letter choice.\n"
                    "Answer: Let's think step by step.")
        if kind == "numeric":
            return (f"Question: {ex.question}\nThink step by step, then give the final number on the last line as "
                    "\"#### <number>\".\nAnswer: Let's think step by step.")
        return f"Question: {ex.question}\nAnswer briefly; end with a line \"Answer: <your answer>\".\n"

    def extract(self, response: str, ex: Example) -> str | None:
        kind = self.answer_type
        if kind == "choice":
            return extract_letter(response, len(ex.options))
        if kind == "numeric":
            return extract_number(response, "auto")
        return extract_text(response)
