"""`rewdistill grade`: answers are extracted by each task's own `extract`, and files are written through io.py."""
from __future__ import annotations

import json

import pytest

from rewdistill import grade
from rewdistill.grade import GRADE_TASKS, grade_file, grade_row
from rewdistill.tasks import TASKS
from rewdistill.tasks.rows import Row


@pytest.mark.parametrize("task", GRADE_TASKS)
def test_grade_calls_the_tasks_own_extract(monkeypatch, task):
    seen = []

    def fake_extract(self, response, ex):
        seen.append((type(self).__name__, response, len(ex.options)))
        return "MARK"

    monkeypatch.setattr(TASKS[task], "extract", fake_extract)
    choice = task in ("mmlu-pro", "tiny-choice")
    data = {"response": "some text", "answer": "B" if choice else "#### 5"}
    if choice:
        data["options"] = ["x", "y", "z"]
    out = grade_row(task, Row(data, "f.jsonl:1"))
    assert out["extracted"] == "MARK" and out["correct"] is False
    assert seen == [(TASKS[task].__name__, "some text", 3 if choice else 0)]


@pytest.mark.parametrize("task,response,answer,options,extracted,correct", [
    ("gsm8k", "so 3 + 4 = 7\n#### 7", "#### 7", None, "7", True),
    ("gsm8k", "the total is 12", "12", None, "12", True),
    ("tiny-arith", "3 + 4 = 7\n#### 7", 7, None, "7", True),
    ("tiny-arith", "the total is 7", "#### 7", None, None, False),  # tiny-arith reads only `#### N`
    ("mmlu-pro", "so the answer is (C)", "C", ["a", "b", "c"], "C", True),
    ("mmlu-pro", "the answer is (D)", "A", ["a", "b", "c"], None, False),  # D is not an option
    ("mmlu-pro", "the answer is (J)", 9, None, "J", True),  # no options: all ten letters
    ("tiny-choice", "The answer is (B).", "B", None, "B", True),
])
def test_grade_row_results(task, response, answer, options, extracted, correct):
    data = {"response": response, "answer": answer, **({"options": options} if options else {})}
    out = grade_row(task, Row(data, "f.jsonl:1"))
    assert (out["extracted"], out["correct"]) == (extracted, correct)


def test_gsm8k_answer_mode_reaches_the_extractor():
    row = Row({"response": "the total is 12", "answer": "12"}, "f.jsonl:1")
    assert grade_row("gsm8k", row, "flexible")["extracted"] == "12"
    assert grade_row("gsm8k", row, "strict")["extracted"] is None


def test_grade_file_writes_through_io(tmp_path, monkeypatch):
    from rewdistill import io

    calls = []

    def spy(path, rows, **kw):
        calls.append(path)
        return io.write_jsonl(path, rows, **kw)

    monkeypatch.setattr(grade, "write_jsonl", spy)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"response": "#### 3", "answer": 3, "note": "café"}) + "\n", encoding="utf-8")
    s = grade_file("tiny-arith", src)
    out = tmp_path / "in.graded.jsonl"
    assert calls == [out] and s["correct"] == 1
    assert "café" in out.read_text(encoding="utf-8")  # non-ASCII text stays readable, as before
    assert not list(tmp_path.glob("*.tmp"))
