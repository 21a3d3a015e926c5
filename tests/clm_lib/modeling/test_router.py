from __future__ import annotations

import numpy as np
import pytest

from clm_lib.demo.stream import TASKS, generate_task
from clm_lib.modeling.router import TaskRouter


def _prompts(n: int, seed: int, tasks=TASKS) -> dict[str, list[str]]:
    return {t: [r["prompt"] for r in generate_task(t, n, seed)] for t in tasks}


def _accuracy(router: TaskRouter, prompts: dict[str, list[str]]) -> float:
    pairs = [(t, p) for t, ps in prompts.items() for p in ps]
    predicted = router.predict([p for _, p in pairs])
    return float(np.mean([got == t for got, (t, _) in zip(predicted, pairs, strict=True)]))


@pytest.fixture(scope="module")
def router() -> TaskRouter:
    return TaskRouter.fit(_prompts(120, seed=1), examples_per_task=100)


def test_routes_held_out_prompts_of_the_demo_tasks(router):
    unseen = _prompts(60, seed=7)  # other tickets than the router was fitted on
    assert _accuracy(router, unseen) >= 0.9
    assert router.accuracy is not None and router.accuracy >= 0.9
    assert router.held_out > 0 and set(router.accuracy_by_task) == set(TASKS)


def test_memory_keeps_a_bounded_stable_sample_per_task(router):
    assert router.tasks == list(TASKS)
    assert all(len(router.memory.rows(t)) == 100 for t in TASKS)
    again = TaskRouter.fit(_prompts(120, seed=1), examples_per_task=100)
    assert np.array_equal(again.memory.keys, router.memory.keys)


def test_a_task_without_new_prompts_is_still_routed_from_memory():
    first = TaskRouter.fit(_prompts(80, seed=1, tasks=TASKS[:3]), examples_per_task=60)
    # The next update brings only a new task: the others come from the router's memory, not from data.
    later = TaskRouter.fit(_prompts(80, seed=2, tasks=TASKS[3:4]), previous=first, examples_per_task=60)
    assert later.tasks == list(TASKS[:4])
    assert _accuracy(later, _prompts(40, seed=9, tasks=TASKS[:4])) >= 0.9


def test_dropping_a_task_forgets_it():
    full = TaskRouter.fit(_prompts(60, seed=1, tasks=TASKS[:3]))
    smaller = TaskRouter.fit({}, previous=full, drop=[TASKS[1]])
    assert smaller.tasks == [TASKS[0], TASKS[2]]
    assert set(smaller.predict([p for ps in _prompts(20, seed=5, tasks=TASKS[:3]).values() for p in ps])) <= {
        TASKS[0],
        TASKS[2],
    }


def test_one_task_and_two_tasks():
    one = TaskRouter.fit(_prompts(20, seed=1, tasks=TASKS[:1]))
    assert one.predict(["anything at all"]) == [TASKS[0]] and one.accuracy == 1.0
    two = TaskRouter.fit(_prompts(60, seed=1, tasks=TASKS[:2]))
    assert _accuracy(two, _prompts(30, seed=4, tasks=TASKS[:2])) >= 0.9
    with pytest.raises(ValueError, match="at least one task"):
        TaskRouter.fit({})


def test_save_and_load_round_trip(tmp_path, router):
    loaded = TaskRouter.load(router.save(tmp_path / "router"))
    prompts = [p for ps in _prompts(10, seed=3).values() for p in ps]
    assert loaded.predict(prompts) == router.predict(prompts)
    assert loaded.summary() == router.summary() and loaded.settings == router.settings
    assert np.array_equal(loaded.memory.keys, router.memory.keys)
    assert (loaded.memory.features != router.memory.features).nnz == 0
