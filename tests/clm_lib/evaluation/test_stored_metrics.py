"""The metrics column: what an evaluation stores, and reading older evaluations on today's metric."""

from __future__ import annotations

from clm_lib.evaluation.stored_metrics import exact_match_scores, on_metric, primary_of, record, value_of


def test_record_keeps_every_metric_rounded_and_the_primary():
    stored = record({"billing": {"exact_match": 80.0, "macro_f1": 44.44444}}, {"billing": "macro_f1"})
    assert stored == {"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 44.44}}}
    assert primary_of(stored, "billing") == "macro_f1"


def test_an_evaluation_without_metrics_scored_exact_match():
    scores = {"billing": 80.0}
    assert primary_of(None, "billing") == "exact_match"
    assert value_of(scores, None, "billing", "exact_match") == 80.0
    assert value_of(scores, None, "billing", "macro_f1") is None


def test_older_rows_are_read_on_todays_metric_where_they_stored_it():
    scores = {"billing": 80.0, "routers": 90.0}
    stored = record({"billing": {"exact_match": 80.0, "macro_f1": 40.0}, "routers": {"exact_match": 90.0}},
                    {"billing": "exact_match", "routers": "exact_match"})  # fmt: skip
    today = {"billing": "macro_f1", "routers": "rouge_l"}
    # billing has macro F1 stored; routers has no ROUGE-L and keeps the score it had.
    assert on_metric(scores, stored, today) == {"billing": 40.0, "routers": 90.0}


def test_exact_match_is_found_whichever_metric_the_scores_are():
    scores = {"billing": 44.4, "routers": 90.0}
    stored = record({"billing": {"exact_match": 85.0, "macro_f1": 44.4}}, {"billing": "macro_f1"})
    assert exact_match_scores(scores, stored) == {"billing": 85.0, "routers": 90.0}
    assert exact_match_scores(scores, None) == scores
