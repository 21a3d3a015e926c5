from clm_lib.config import GateConfig
from clm_lib.evaluation.gate import decide


def test_first_candidate_passes_with_its_new_tasks():
    r = decide({"a": 80.0}, None, GateConfig(min_new_task_accuracy=50))
    assert r.passed and "no champion" in r.reasons[0]


def test_regression_beyond_budget_fails_and_says_which_task():
    r = decide({"a": 70.0, "b": 90.0}, {"a": 80.0}, GateConfig(max_task_drop=5))
    assert not r.passed
    assert any(reason.startswith("a:") and "REGRESSED" in reason for reason in r.reasons)


def test_drop_within_budget_passes():
    assert decide({"a": 77.0, "b": 90.0}, {"a": 80.0}, GateConfig(max_task_drop=5)).passed


def test_task_missing_from_candidate_fails():
    r = decide({"b": 90.0}, {"a": 80.0}, GateConfig())
    assert not r.passed and "not evaluated" in r.reasons[0]


def test_new_task_below_minimum_fails():
    assert not decide({"a": 80.0, "b": 10.0}, {"a": 80.0}, GateConfig(min_new_task_accuracy=50)).passed


def test_empty_candidate_fails():
    assert not decide({}, {"a": 1.0}, GateConfig()).passed
