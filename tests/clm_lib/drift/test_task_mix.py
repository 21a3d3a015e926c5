from clm_lib.drift import Status
from clm_lib.drift.config import TaskMixSettings
from clm_lib.drift.task_mix import TaskMix
from clm_lib.drift.window import TextWindow


def test_quiet_on_same_mix(reference, same):
    res = TaskMix().check(reference, same)
    assert res.status == Status.OK and res.drift is False, res.explanation


def test_fires_on_a_mix_shift(reference, mix):
    skewed = mix(("routers",), 300, 5) + mix(("billing", "thermostats"), 75, 5)
    res = TaskMix().check(reference, TextWindow.from_records(skewed))
    assert res.drift is True
    assert res.details["current_share"]["routers"] > 0.6
    assert "routers 33% -> 67%" in res.explanation


def test_a_new_task_is_a_shift(reference, mix):
    res = TaskMix().check(reference, TextWindow.from_records(mix(("routers", "billing", "thermostats", "ev_chargers"),
                                                                  150, 6)))
    assert res.drift is True and res.details["new_categories"] == ["ev_chargers"]


def test_single_task_is_insufficient_data(mix):
    only = TextWindow.from_records(mix(("routers",), 300, 7))
    res = TaskMix().check(only, TextWindow.from_records(mix(("routers",), 300, 8)))
    assert res.status == Status.INSUFFICIENT and res.drift is None
    assert "single task" in res.explanation


def test_rare_categories_use_the_permutation_test(reference, same):
    rare = TextWindow.from_lists(same.prompts.tolist(), same.tasks.tolist()[:-3] + ["ev_chargers"] * 3)
    res = TaskMix().check(reference, rare)
    assert res.details["method"] == "permutation"
    assert res.drift is not None


def test_label_mix(reference, same):
    res = TaskMix(TaskMixSettings(column="response")).check(reference, same)
    assert res.drift is False and res.details["column"] == "response"
