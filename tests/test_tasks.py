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
        assert not set(splits["train"]) & set(splits["validation"])
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


def _check_equations(lines):
    """Every `[label: ]a +/- b ... = c` line is correct arithmetic; returns the last right-hand side."""
    value = None
    for line in lines:
        left, right = line.split(": ")[-1].split(" = ")
        terms = left.split(" ")
        total = int(terms[0])
        for op, num in zip(terms[1::2], terms[2::2]):
            total += int(num) if op == "+" else -int(num)
        assert total == int(right), line
        value = int(right)
    return value


def test_every_solution_style_is_correct_arithmetic_ending_at_the_answer():
    import random

    import pytest

    from rewdistill.tasks import tiny_arith, tiny_choice
    from rewdistill.tasks.base import STYLES, solution_lines

    # hand-computed: 12 + 5 - 8 + 3 = 12, and 12 + 5 - 8 - 9 = 0
    assert solution_lines(12, [5, -8, 3], "sequential") == ["12 + 5 = 17", "17 - 8 = 9", "9 + 3 = 12"]
    assert solution_lines(12, [5, -8, 3], "grouped") == ["Gained: 5 + 3 = 8", "12 + 8 = 20", "20 - 8 = 12"]
    assert solution_lines(12, [5, -8, 3], "gains_first") == ["12 + 5 = 17", "17 + 3 = 20", "20 - 8 = 12"]
    assert solution_lines(12, [5, -8, -9], "net") == ["Change: 5 - 8 - 9 = -12", "12 - 12 = 0"]
    with pytest.raises(ValueError, match="unknown solution style"):
        solution_lines(1, [1], "backwards")
    rng = random.Random(0)
    for _ in range(100):
        for style in STYLES:
            _, sol, ans = tiny_arith.make_problem(rng, style=style)
            lines = sol.splitlines()
            assert _check_equations(lines[1:-1]) == int(ans) and lines[-1] == f"#### {ans}"
            _, sol, letter, texts = tiny_choice.make_problem(rng, style=style)
            steps = sol.split(". ")[:-2]  # the equations, then "V is (X)" and "The answer is (X)."
            assert str(_check_equations(steps)) == texts["ABCDEFGHIJ".index(letter)]


def test_tiny_arith_docstring_names_every_solution_style():
    from rewdistill.tasks import base, tiny_arith

    for style in base.STYLES:
        assert style in tiny_arith.__doc__, style


def test_file_task_docstring_names_parse_as_it_is():
    import inspect

    from rewdistill.tasks import real

    params = list(inspect.signature(real.FileTask.parse).parameters)[1:]  # without self
    assert f"parse({', '.join(params)})" in real.FileTask.__doc__, real.FileTask.__doc__
