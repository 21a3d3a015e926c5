"""The benchmark's arithmetic: gap closure, cost ratios, learning ratios and the target checks."""

from __future__ import annotations

import pytest
from continual_metrics import Cost, cost_ratios, gap_closure, learning_ratios, matrix_from_rows, summarize, targets

TASKS = ["a", "b", "c"]
# a learnt to 90, then forgotten to 60; b learnt to 80, then 70; c learnt to 100.
ROWS = [{"a": 90.0}, {"a": 75.0, "b": 80.0}, {"a": 60.0, "b": 70.0, "c": 100.0}]


def test_gap_closure_places_an_arm_between_the_bounds():
    assert gap_closure(60.0, aa_sequential=20.0, aa_joint=100.0) == pytest.approx(0.5)
    assert gap_closure(20.0, 20.0, 100.0) == 0.0
    assert gap_closure(100.0, 20.0, 100.0) == 1.0
    assert gap_closure(10.0, 20.0, 100.0) == pytest.approx(-0.125)  # worse than fine-tuning alone
    assert gap_closure(99.0, 20.0, 96.0) == pytest.approx(79 / 76)  # better than joint: above 1, not capped


def test_gap_closure_is_undefined_when_joint_does_not_beat_sequential():
    assert gap_closure(50.0, 60.0, 60.0) is None
    assert gap_closure(50.0, 60.0, 55.0) is None


def test_cost_ratios_per_update_last_and_cumulative():
    mine = [Cost(100, 10.0, 8.0), Cost(100, 10.0, 8.0), Cost(100, 20.0, 8.0)]
    retrain = [Cost(100, 10.0, 8.0), Cost(200, 20.0, 16.0), Cost(400, 40.0, 32.0)]
    r = cost_ratios(mine, retrain)
    assert r["tokens"]["per_update"] == pytest.approx([1.0, 0.5, 0.25])
    assert r["tokens"]["last"] == pytest.approx(0.25)
    # Whole stream over whole stream (300 / 700), not the mean of the per-update ratios (0.583).
    assert r["tokens"]["cumulative"] == pytest.approx(300 / 700)
    assert r["seconds"]["last"] == pytest.approx(0.5)
    assert r["seconds"]["cumulative"] == pytest.approx(40 / 70)
    assert r["cpu_seconds"]["last"] == pytest.approx(0.25)


def test_cost_ratios_refuse_mismatched_or_empty_references():
    with pytest.raises(ValueError, match="one reference per update"):
        cost_ratios([Cost(1, 1.0, 1.0)], [])
    with pytest.raises(ValueError, match="must be positive"):
        cost_ratios([Cost(1, 1.0, 1.0)], [Cost(0, 1.0, 1.0)])


def test_summary_reads_the_matrix():
    m = matrix_from_rows(TASKS, ROWS)
    s = summarize(m, {"a": 90.0, "b": 100.0, "c": 100.0})
    assert s["R"] == [[90.0, None, None], [75.0, 80.0, None], [60.0, 70.0, 100.0]]
    assert s["AA"] == pytest.approx(230 / 3)
    assert s["BWT"] == pytest.approx(((60 - 90) + (70 - 80)) / 2)
    assert s["forgetting"] == {"a": 30.0, "b": 10.0}
    assert s["mean_forgetting"] == pytest.approx(20.0)
    assert s["diagonal"] == {"a": 90.0, "b": 80.0, "c": 100.0}
    assert s["learning_ratio"] == {"a": 1.0, "b": 0.8, "c": 1.0}
    assert s["min_learning_ratio"] == pytest.approx(0.8)


def test_learning_ratio_without_a_single_task_score_is_unknown():
    m = matrix_from_rows(TASKS, ROWS)
    assert learning_ratios(m, {"a": 90.0, "b": 0.0}) == {"a": 1.0, "b": None, "c": None}


def _arm(aa, bwt, closure, learning, last_tokens, last_seconds):
    return {
        "AA": aa,
        "BWT": bwt,
        "gap_closure": closure,
        "min_learning_ratio": learning,
        "cost": {"tokens": {"last": last_tokens}, "seconds": {"last": last_seconds}},
    }


BOUNDS = {"sequential_bwt": -30.0, "gap_closure": 0.95, "bwt": -2.0, "learning": 0.9, "cost": 0.25}


def test_targets_check_each_bound_in_its_direction():
    arms = {"sequential": _arm(20, -80.0, 0.0, 1.0, 0.2, 0.2), "rec": _arm(95, -1.0, 0.96, 0.92, 0.2, 0.3)}
    checks = {t.name: t for t in targets(arms, "rec", BOUNDS)}
    assert checks["sequential BWT"].met
    assert checks["rec gap closure"].met
    assert checks["rec BWT"].met
    assert checks["rec min R[i][i] / single-task"].met
    assert checks["rec last update cost / retraining (tokens)"].met
    assert not checks["rec last update cost / retraining (seconds)"].met  # 0.3 > 0.25

    arms = {"sequential": _arm(50, -10.0, 0.0, 1.0, 0.2, 0.2), "rec": _arm(60, -2.5, None, 0.5, 0.2, 0.2)}
    checks = {t.name: t for t in targets(arms, "rec", BOUNDS)}
    assert not checks["sequential BWT"].met  # the stream did not make fine-tuning forget
    assert not checks["rec BWT"].met
    assert not checks["rec gap closure"].met  # undefined counts as missed
    assert not checks["rec min R[i][i] / single-task"].met


def test_targets_only_check_the_bounds_given():
    arms = {"sequential": _arm(20, -80.0, 0.0, 1.0, 0.2, 0.2), "rec": _arm(95, -1.0, 0.96, 0.92, 0.2, 0.3)}
    names = [t.name for t in targets(arms, "rec", {"sequential_bwt": -30.0, "bwt": -5.0})]
    assert names == ["sequential BWT", "rec BWT"]
