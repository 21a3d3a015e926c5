from datetime import UTC, datetime, timedelta

from clm_lib.drift import DriftResult, Status
from clm_lib.drift.config import DriftConfig
from clm_lib.drift.policy import decide

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _res(name: str, drift: bool | None, status: Status = Status.OK) -> DriftResult:
    return DriftResult(name, status, drift, f"{name} says {drift}")


def test_a_firing_detector_requests_retraining_with_its_reason():
    d = decide([_res("embedding_mmd", True), _res("task_mix", False)], DriftConfig(), new_rows=10, now=NOW)
    assert d.retrain is True
    assert [r.detector for r in d.reasons] == ["embedding_mmd"]
    assert d.reasons[0].explanation == "embedding_mmd says True"
    assert d.fired == ["embedding_mmd"]
    assert d.summary.startswith("retrain: embedding_mmd")


def test_cooldown_suppresses_a_second_trigger_within_the_window():
    settings = DriftConfig()
    results = [_res("text_stats", True)]
    first = decide(results, settings, new_rows=10, now=NOW)
    assert first.retrain
    again = decide(results, settings, new_rows=10, last_triggered={"text_stats": NOW}, now=NOW + timedelta(hours=2))
    assert again.retrain is False
    assert "24 h cooldown" in again.suppressed["text_stats"]
    assert again.fired == ["text_stats"]  # still recorded as drift, just not acted on
    later = decide(results, settings, new_rows=10, last_triggered={"text_stats": NOW}, now=NOW + timedelta(hours=25))
    assert later.retrain is True


def test_naive_datetimes_from_sqlite_count_as_utc():
    naive = NOW.replace(tzinfo=None)
    d = decide([_res("text_stats", True)], DriftConfig(), last_triggered={"text_stats": naive}, now=NOW)
    assert d.retrain is False


def test_alert_only_detectors_never_trigger():
    d = decide([_res("perplexity", True)], DriftConfig(), new_rows=0, now=NOW)
    assert d.retrain is False
    assert "alert only" in d.suppressed["perplexity"]


def test_volume_trigger_fires_on_enough_new_rows_without_drift():
    settings = DriftConfig(volume={"min_new_rows": 500})
    low = decide([_res("task_mix", False)], settings, new_rows=499, now=NOW)
    assert not low.retrain
    assert low.results[-1].detector == "volume" and low.results[-1].drift is False
    high = decide([_res("task_mix", False)], settings, new_rows=500, now=NOW)
    assert high.retrain and [r.detector for r in high.reasons] == ["volume"]
    assert "500 new curated rows" in high.reasons[0].explanation


def test_unknown_volume_and_insufficient_detectors_are_not_no_drift():
    d = decide([_res("task_mix", None, Status.INSUFFICIENT)], DriftConfig(), new_rows=None, now=NOW)
    assert not d.retrain
    assert {r.detector: r.status for r in d.results} == {"task_mix": Status.INSUFFICIENT,
                                                         "volume": Status.INSUFFICIENT}
    assert "could not judge: task_mix, volume" in d.summary


def test_degraded_results_still_count():
    d = decide([_res("embedding_mmd", True, Status.DEGRADED)], DriftConfig(), now=NOW)
    assert d.retrain


def test_to_dict_is_json_safe():
    import json

    res = DriftResult("text_stats", Status.OK, True, "x", statistic=float("nan"), details={"v": __import__("numpy")
                                                                                       .float64(1.5)})
    payload = decide([res], DriftConfig(), new_rows=3, now=NOW).to_dict()
    text = json.dumps(payload, allow_nan=False)
    assert '"statistic": null' in text and '"v": 1.5' in text


def test_the_first_training_starts_on_the_initial_rows_even_with_volume_off():
    settings = DriftConfig(volume={"enabled": False, "initial_rows": 300})
    insufficient = [_res("embedding_mmd", None, Status.INSUFFICIENT)]
    few = decide(insufficient, settings, new_rows=299, now=NOW, first_training=True)
    assert not few.retrain and "initial-training threshold of 300" in few.results[-1].explanation
    enough = decide(insufficient, settings, new_rows=300, now=NOW, first_training=True)
    assert enough.retrain and [r.detector for r in enough.reasons] == ["volume"]
    assert "no model trained yet" in enough.reasons[0].explanation
    # Once a model exists the volume trigger's own switch and threshold apply again.
    assert not decide(insufficient, settings, new_rows=5000, now=NOW).retrain


def test_a_new_task_overrides_the_cooldown_but_a_mix_shift_does_not():
    def task_mix(new):
        return DriftResult("task_mix", Status.OK, True, "the task mix moved",
                           details={"column": "task", "new_categories": new})

    last = {"task_mix": NOW - timedelta(hours=1)}
    new_task = decide([task_mix(["thermostats"])], DriftConfig(), last_triggered=last, now=NOW)
    assert new_task.retrain and "a new task overrides the cooldown" in new_task.reasons[0].explanation
    shift = decide([task_mix([])], DriftConfig(), last_triggered=last, now=NOW)
    assert not shift.retrain and "cooldown" in shift.suppressed["task_mix"]
    off = DriftConfig(task_mix={"new_task_overrides_cooldown": False})
    assert not decide([task_mix(["thermostats"])], off, last_triggered=last, now=NOW).retrain
