"""Tiny tasks: fixed disjoint splits, prompts and answer extraction."""
from rewdistill.tasks import get_task
from rewdistill.tasks.tiny_arith import extract_hash_answer
from rewdistill.tasks.tiny_choice import extract_choice


def test_splits_are_fixed_and_disjoint():
    for name in ["tiny-arith", "tiny-choice"]:
        a, b = get_task(name, 0), get_task(name, 0)
        splits = {s: [e.question for e in a.load(s)] for s in ["train", "validation", "test"]}
        assert splits["test"] == [e.question for e in b.load("test")]
        assert not set(splits["train"]) & set(splits["test"])
        assert not set(splits["validation"]) & set(splits["test"])
        assert get_task(name, 1).load("test")[0].question != a.load("test")[0].question


def test_gold_solutions_grade_as_correct():
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        for ex in task.load("test"):
            assert task.is_correct(ex.solution, ex), ex.solution


def test_tiny_arith_solution_has_one_equation_per_step():
    ex = get_task("tiny-arith").load("train")[0]
    steps = ex.question.count("Then")
    assert sum("=" in line for line in ex.solution.splitlines()) == steps
    assert ex.solution.splitlines()[-1] == f"#### {ex.answer}"


def test_tiny_choice_has_ten_options_and_one_right():
    for ex in get_task("tiny-choice").load("validation"):
        assert len(ex.options) == 10 and len(set(ex.options)) == 10
        assert ex.options["ABCDEFGHIJ".index(ex.answer)] in ex.solution


def test_extractors():
    assert extract_hash_answer("3 + 4 = 7\n#### 7") == "7"
    assert extract_hash_answer("#### 1,234") == "1234"
    assert extract_hash_answer("#### 3 then #### 5") == "5"
    assert extract_hash_answer("the answer is 7") is None
    assert extract_choice("The answer is (C).") == "C"
    assert extract_choice("The answer is (J).", n_options=4) is None
    assert extract_choice("no idea") is None
