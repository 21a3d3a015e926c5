"""The metrics column: what an evaluation stores, and reading older evaluations on today's metric."""

from __future__ import annotations

from types import SimpleNamespace

from clm_lib.evaluation.gate import decide
from clm_lib.evaluation.stored_metrics import (
    exact_match_scores,
    gate_inputs,
    on_metric,
    primary_of,
    record,
    value_of,
)


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


def test_the_gate_compares_one_metric_when_a_tasks_metric_changed_between_versions(cfg):
    # The champion was scored when billing's metric was exact match (85); the candidate after it became macro F1
    # (44.4 macro F1, 84 exact match). Raw scores would read a 40-point drop.
    champion = SimpleNamespace(scores={"billing": 85.0}, metrics=None)
    candidate = SimpleNamespace(
        scores={"billing": 44.4},
        metrics=record({"billing": {"exact_match": 84.0, "macro_f1": 44.4}}, {"billing": "macro_f1"}),
    )
    cand, champ, metrics, notes = gate_inputs(candidate, champion)
    assert (cand, champ, metrics) == ({"billing": 84.0}, {"billing": 85.0}, {"billing": "exact_match"})
    assert notes == ["billing: compared on exact_match, the champion has no macro_f1 score"]
    assert decide(cand, champ, cfg.gate, metrics).passed
    assert not decide(candidate.scores, champion.scores, cfg.gate).passed, "what comparing raw scores would say"


def test_a_first_version_has_nothing_to_compare_with():
    candidate = SimpleNamespace(scores={"billing": 44.4}, metrics=record({"billing": {"macro_f1": 44.4}},
                                                                         {"billing": "macro_f1"}))  # fmt: skip
    assert gate_inputs(candidate, None) == ({"billing": 44.4}, None, {"billing": "macro_f1"}, [])
