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


def test_a_non_default_primary_metric_drives_the_decision_and_is_named():
    from clm_lib.evaluation.stored_metrics import comparable

    # The candidate answers the majority label more often: exact match up, macro F1 (the primary) down.
    champion = (
        {"billing": 70.0},
        {"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 70.0}}},
    )
    candidate = (
        {"billing": 44.4},
        {"billing": {"primary": "macro_f1", "values": {"exact_match": 85.0, "macro_f1": 44.4}}},
    )
    cand, champ, metrics, notes = comparable(candidate, champion)
    r = decide(cand, champ, GateConfig(max_task_drop=5), metrics)
    assert not r.passed and notes == []
    assert r.reasons == ["billing (macro_f1): 70.0 -> 44.4 (-25.6; budget -5.0) REGRESSED"]
    # Scored on exact match instead, the same two versions pass.
    exact = {"billing": "exact_match"}
    assert decide({"billing": 85.0}, {"billing": 80.0}, GateConfig(max_task_drop=5), exact).passed


def test_a_metric_chosen_after_the_champion_was_scored_is_compared_on_the_champions_metric():
    from clm_lib.evaluation.stored_metrics import comparable

    champion = ({"billing": 80.0, "routers": 90.0}, None)  # from before metrics were stored: exact match
    candidate = (
        {"billing": 50.0, "routers": 91.0},
        {"billing": {"primary": "macro_f1", "values": {"exact_match": 82.0, "macro_f1": 50.0}},
         "routers": {"primary": "exact_match", "values": {"exact_match": 91.0, "macro_f1": 60.0}}},
    )  # fmt: skip
    cand, champ, metrics, notes = comparable(candidate, champion)
    assert (cand, champ) == ({"billing": 82.0, "routers": 91.0}, {"billing": 80.0, "routers": 90.0})
    assert metrics == {"billing": "exact_match", "routers": "exact_match"}
    assert notes == ["billing: compared on exact_match, the champion has no macro_f1 score"]
    assert decide(cand, champ, GateConfig(max_task_drop=5), metrics).passed
