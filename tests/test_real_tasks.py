"""GSM8K, MMLU-Pro and JSONL tasks on the real files in ../shared/data: loading, prompting, grading, bad rows."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from rewdistill.cli import main
from rewdistill.grade import grade_file
from rewdistill.models.load import load_prompt_format
from rewdistill.tasks import DataError, get_task
from rewdistill.tasks.answers import LETTERS, extract_letter, extract_number, normalize_number
from tests.conftest import need_data


def test_number_normalisation_and_gsm8k_modes():
    assert normalize_number("1,000") == "1000" and normalize_number("$18.00") == "18"
    assert normalize_number("-3.50.") == "-3.5" and normalize_number("abc") is None
    text = "She pays $1,250. Then 3 more.\n#### 1,253."
    assert extract_number(text, "strict") == "1253" and extract_number(text, "flexible") == "1253"
    no_hash = "So the total is 42 dollars, or 42.0."
    assert extract_number(no_hash, "strict") is None
    assert extract_number(no_hash, "flexible") == "42" and extract_number(no_hash, "auto") == "42"
    assert extract_number("#### 7 but later 9", "auto") == "7"  # auto prefers the #### answer


def test_mmlu_pro_cascade_uses_existing_letters_only():
    assert extract_letter("so the answer is (C).", 4) == "C"
    assert extract_letter("the answer is (H)", 4) is None  # H does not exist with 4 options, nothing else parses
    assert extract_letter("I think... Answer: B", 4) == "B"
    assert extract_letter("between A and D, D fits", 4) == "D"  # last standalone letter
    assert extract_letter("no letter here", 10) is None
    assert extract_letter("the answer is (A)", 1) == "A"


def test_gsm8k_files_load_and_every_gold_solution_grades_correct():
    root = need_data("gsm8k")
    task = get_task("gsm8k", path=str(root))
    train, val, test = task.load("train"), task.load("validation"), task.load("test")
    assert (len(train) + len(val), len(val), len(test)) == (7473, 200, 1319)
    assert not {e.qid for e in train} & {e.qid for e in val}
    for ex in train + val + test:
        for mode in ("strict", "flexible", "auto"):
            assert get_task("gsm8k", path=str(root), answer_mode=mode).extract(ex.solution, ex) == ex.answer, ex.qid
    zero = task.prompt(test[0])
    assert zero.startswith("Question: Janet") and zero.endswith("Let's think step by step.")
    few = get_task("gsm8k", path=str(root), num_fewshot=8).prompt(test[0])
    assert few.count("#### ") == 8 and few.endswith(zero)
    # grading: a wrong number, a bare number without ####, garbage
    ex = test[0]
    assert task.is_correct("The answer is 18.", ex) and not task.is_correct("#### 17", ex)
    assert task.extract("no digits", ex) is None


def test_mmlu_pro_loads_every_option_count_and_grades_gold_letters():
    path = need_data("mmlu_pro", "test.jsonl")
    task = get_task("mmlu-pro", path=str(path), n_heldout=2000, n_validation=300)
    splits = [task.load(s) for s in ("train", "validation", "test")]
    everything = [e for s in splits for e in s]
    assert [len(s) for s in splits] == [12032 - 2300, 300, 2000]
    assert len({e.qid for e in everything}) == 12032
    counts = Counter(len(e.options) for e in everything)
    assert set(counts) == set(range(1, 11)), counts  # 1..10 options all occur
    for ex in everything:
        n = len(ex.options)
        assert ex.answer in LETTERS[:n]
        prompt = task.prompt(ex)
        assert f"\n{LETTERS[n - 1]}. " in prompt and (n == 10 or f"\n{LETTERS[n]}. " not in prompt)
        assert task.is_correct(f"Reasoning. The answer is ({ex.answer}).", ex)
        assert task.is_correct(f"Answer: {ex.answer}", ex)
        wrong = LETTERS[(LETTERS.index(ex.answer) + 1) % n]
        assert task.is_correct(f"the answer is ({wrong})", ex) == (n == 1)
    # a shuffled carve with another seed gives other test questions
    other = get_task("mmlu-pro", path=str(path), data_seed=1, n_heldout=2000, n_validation=300)
    assert {e.qid for e in other.load("test")} != {e.qid for e in splits[2]}


def test_chat_template_wraps_prompts(tmp_path, other_tokenizer):
    tok = other_tokenizer
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok.save_pretrained(tmp_path)
    tok.chat_template = None
    on, off = load_prompt_format(str(tmp_path)), load_prompt_format(str(tmp_path), chat_template="off")
    plain = off.prompt_ids("Question: 2 + 2?")
    chat = on.prompt_ids("Question: 2 + 2?")
    assert on.decode(chat).startswith("<|im_start|>user\nQuestion: 2 + 2?") and on.decode(chat).endswith("assistant\n")
    assert off.decode(plain) == "Question: 2 + 2?"


def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_grade_cli_on_real_gsm8k_and_mmlu_pro(tmp_path, capsys):
    gsm = [json.loads(line) for line in need_data("gsm8k", "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]]
    rows = [{"response": r["answer"], "answer": r["answer"]} for r in gsm[:30]]  # gold solutions: correct
    rows += [{"response": "I do not know.", "answer": r["answer"]} for r in gsm[30:35]]  # unparsable
    rows += [{"response": "The total is 999999.", "answer": r["answer"]} for r in gsm[35:40]]  # last number, wrong
    src = _rows(tmp_path / "gsm.jsonl", rows)
    before = src.read_bytes()
    assert main(["grade", "--task", "gsm8k", str(src)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 75.00% (30/40), unparsable 5" in out
    graded = [json.loads(line) for line in (tmp_path / "gsm.graded.jsonl").read_text().splitlines()]
    assert [g["correct"] for g in graded] == [True] * 30 + [False] * 10
    assert graded[30]["extracted"] is None and graded[35]["extracted"] == "999999"
    assert src.read_bytes() == before

    mm = [json.loads(line)
          for line in need_data("mmlu_pro", "test.jsonl").read_text(encoding="utf-8").splitlines()[:50]]
    rows = [{"response": f"The answer is ({r['answer']})", "answer": r["answer"], "options": r["options"]} for r in mm]
    rows[0]["response"] = "hmm"
    summary = grade_file("mmlu-pro", _rows(tmp_path / "mm.jsonl", rows), tmp_path / "o.jsonl")
    assert (summary["correct"], summary["unparsable"], summary["rows"]) == (49, 1, 50)


def test_bad_rows_fail_with_file_and_line_or_skip_and_count(tmp_path, capsys):
    good = {"question": "q1", "answer": "#### 3"}
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"question": "q2"}) + "\n{not json\n", encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"data.jsonl:3: malformed JSON"):
        get_task("gsm8k", path=str(path)).load("test")
    path.write_text(json.dumps(good) + "\n" + json.dumps({"question": "q2"}) + "\n"
                    + "".join(json.dumps({"question": f"q{i}", "answer": i}) + "\n" for i in range(3)))
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"data.jsonl:2: missing field 'answer'.*bad_rows: skip"):
        get_task("gsm8k", path=str(path)).load("test")
    task = get_task("gsm8k", path=str(path), bad_rows="skip", n_heldout=1, n_validation=1)
    assert len(task.load("train")) == 2 and task.bad.count == 1 and "data.jsonl:2" in task.bad.examples[0]
    # a choice row whose letter is not among its options
    choice = tmp_path / "choice.jsonl"
    _rows(choice, [{"question": "x", "options": ["a", "b", "c"], "answer": "D"}])
    with pytest.raises(DataError, match=r"choice.jsonl:1: answer 'D' is not one of the options A..C"):
        get_task("mmlu-pro", path=str(choice)).load("test")
    # through the CLI: one line, exit 1, input untouched
    bad = _rows(tmp_path / "g.jsonl", [{"response": "#### 1"}])
    assert main(["grade", "--task", "gsm8k", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "g.jsonl:1: missing field 'answer'" in err
    assert path.read_bytes() == before and bad.read_text() == json.dumps({"response": "#### 1"}) + "\n"


def test_jsonl_task_answer_types(tmp_path):
    d = tmp_path / "own"
    d.mkdir()
    _rows(d / "train.jsonl", [{"question": f"q{i}", "answer": i} for i in range(6)])
    _rows(d / "test.jsonl", [{"id": "t1", "question": "What is 2+3?", "answer": "5.0"}])
    task = get_task("jsonl", path=str(d), answer_type="numeric", n_validation=2)
    assert [len(task.load(s)) for s in ("train", "validation", "test")] == [4, 2, 1]
    ex = task.load("test")[0]
    assert ex.qid == "t1" and ex.answer == "5" and task.is_correct("2 + 3 = 5\n#### 5", ex)
    text = get_task("jsonl", path=str(d), answer_type="text", n_validation=2)
    _rows(d / "test.jsonl", [{"question": "Capital of France?", "answer": "Paris."}])
    ex = text.load("test")[0]
    assert ex.answer == "paris" and text.is_correct("It is in Europe.\nAnswer: paris", ex)
    assert not text.is_correct("Answer: Lyon", ex)


def test_hub_loading_goes_through_datasets(monkeypatch):
    """No network in tests: a stand-in `datasets` module checks the hub ids, configs and splits we ask for."""
    import sys
    import types

    asked = []

    def load_dataset(repo, config, split):
        asked.append((repo, config, split))
        n = 30 if split == "train" else 5
        return [{"question": f"{split} q{i}", "answer": f"Work.\n#### {i}"} for i in range(n)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = get_task("gsm8k", n_validation=10)
    assert [len(task.load(s)) for s in ("train", "validation", "test")] == [20, 10, 5]
    assert sorted(asked) == [("openai/gsm8k", "main", "test"), ("openai/gsm8k", "main", "train")]
    assert task.load("test")[3].answer == "3"


def test_hub_without_datasets_and_parquet_without_pyarrow_say_what_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(DataError, match=r"pip install datasets.*task.path"):
        get_task("mmlu-pro").load("test")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"test.parquet: reading parquet needs pyarrow"):
        get_task("mmlu-pro", path=str(tmp_path)).load("test")
