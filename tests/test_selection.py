"""Gold-free checkpoint selection: best check and early stop on hand-made histories."""
from __future__ import annotations

from rewdistill.train.selection import Selection


def test_best_is_the_highest_agreement_and_the_earliest_of_equals():
    s = Selection()
    assert s.add(0, 0.50, None)
    assert s.add(10, 0.60, 0.1)
    assert not s.add(20, 0.60, 0.2)  # equal: the earlier one stays best
    assert not s.add(30, 0.55, 0.3)
    assert s.steps[s.best] == 10
    summary = s.summary("best", 30)
    assert summary["kept_step"] == 10 and "step 10" in summary["why"]
    assert s.summary("last", 30)["kept_step"] == 30


def test_early_stop_when_agreement_falls_while_reward_rises():
    s = Selection(patience=2)
    for step, agr, rew in [(0, 0.5, None), (10, 0.7, 0.1), (20, 0.65, 0.3)]:
        s.add(step, agr, rew)
        assert not s.should_stop()
    s.add(30, 0.60, 0.4)  # second bad check in a row
    assert s.should_stop()


def test_no_early_stop_when_the_reward_falls_too_or_patience_is_zero():
    s = Selection(patience=2)
    for step, agr, rew in [(0, 0.5, None), (10, 0.7, 0.5), (20, 0.65, 0.3), (30, 0.60, 0.2)]:
        s.add(step, agr, rew)
    assert not s.should_stop()  # agreement fell but so did the reward: not reward hacking
    s0 = Selection(patience=0)
    for step, agr, rew in [(0, 0.5, None), (10, 0.7, 0.1), (20, 0.1, 0.9), (30, 0.1, 0.9)]:
        s0.add(step, agr, rew)
    assert not s0.should_stop()


def test_early_stop_when_the_sft_student_was_best():
    """The check before RL has no reward; agreement falling below it while rewards come in is a bad check."""
    s = Selection(patience=2)
    for step, agr, rew in [(0, 0.7, None), (10, 0.6, 0.1), (20, 0.5, 0.2)]:
        s.add(step, agr, rew)
    assert s.should_stop() and s.summary("best", 20)["kept_step"] == 0


def test_teacher_vote_score_is_the_teachers_share_of_the_policys_answers():
    from rewdistill.labels import answer_shares, teacher_vote_score
    teacher = [{"qid": "a", "answer": "1"}, {"qid": "a", "answer": "1"}, {"qid": "a", "answer": "2"},
               {"qid": "a", "answer": None}, {"qid": "b", "answer": "7"}, {"qid": "b", "answer": "8"}]
    shares = answer_shares(teacher)
    assert shares == {"a": {"1": 0.5, "2": 0.25}, "b": {"7": 0.5, "8": 0.5}}
    # question a: answers 1, 2, 3 (unknown to the teacher), None -> (0.5 + 0.25 + 0 + 0) / 4; question b: 8, 8 -> 0.5
    score = teacher_vote_score([["1", "2", "3", None], ["8", "8"]], [shares["a"], shares["b"]])
    assert abs(score - (0.1875 + 0.5) / 2) < 1e-12


def test_selection_summary_names_its_metric():
    s = Selection()
    s.add(0, 0.3, None)
    s.add(10, 0.4, 0.2)
    out = s.summary("best", 20, metric="teacher_vote")
    assert out["metric"] == "teacher_vote" and out["kept_step"] == 10 and "teacher_vote 40.0%" in out["why"]
