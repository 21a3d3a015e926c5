import numpy as np

from clm_lib.drift import DriftContext, Status
from clm_lib.drift.concept import Concept
from clm_lib.drift.window import TextWindow

EVAL = {"routers": (90.0, 200), "billing": (90.0, 200), "thermostats": (90.0, 200)}


def _scorer(accuracy: dict[str, float]):
    """A champion stand-in that answers exactly the given share of each task's rows right."""

    def score(window: TextWindow) -> np.ndarray:
        out = np.zeros(len(window))
        for task, acc in accuracy.items():
            rows = np.flatnonzero(window.tasks == task)
            out[rows[: round(acc * len(rows))]] = 1.0
        return out

    return score


def test_quiet_when_new_data_scores_like_the_evaluation(same):
    ctx = DriftContext(score_fn=_scorer({"routers": 0.9, "billing": 0.9, "thermostats": 0.9}), eval_scores=EVAL)
    res = Concept().check(TextWindow.coerce([]), same, ctx)
    assert res.status == Status.OK and res.drift is False, res.explanation


def test_fires_on_the_task_that_dropped(same):
    ctx = DriftContext(score_fn=_scorer({"routers": 0.6, "billing": 0.9, "thermostats": 0.9}), eval_scores=EVAL)
    res = Concept().check(TextWindow.coerce([]), same, ctx)
    assert res.drift is True
    assert res.details["fired"] == ["routers"]
    assert "routers 90% -> " in res.explanation


def test_small_drops_below_the_floor_do_not_fire(same):
    ctx = DriftContext(score_fn=_scorer({"routers": 0.87, "billing": 0.9, "thermostats": 0.9}), eval_scores=EVAL)
    assert Concept().check(TextWindow.coerce([]), same, ctx).drift is False


def test_tasks_never_learned_are_listed_not_tested(reference, mix):
    cur = TextWindow.from_records(mix(("routers", "ev_chargers"), 150, 9))
    ctx = DriftContext(score_fn=_scorer({"routers": 0.9}), eval_scores={"routers": (90.0, 200)})
    res = Concept().check(reference, cur, ctx)
    assert res.drift is False and res.details["untested_tasks"] == ["ev_chargers"]
    assert "never learned" in res.explanation


def test_insufficient_without_champion_or_labels(same):
    assert Concept().check(same, same, DriftContext()).status == Status.INSUFFICIENT
    unlabelled = TextWindow.from_lists(same.prompts.tolist(), same.tasks.tolist())
    ctx = DriftContext(score_fn=_scorer({}), eval_scores=EVAL)
    res = Concept().check(same, unlabelled, ctx)
    assert res.status == Status.INSUFFICIENT and "no labels" in res.explanation
