"""The Multi-task report and the impact analyses, over a real clm database, a real MLflow registry and per-task
adapter folders with a real router (no model is loaded)."""

from __future__ import annotations

import pytest

from clm_lib.db import upgrade
from clm_lib.modeling.router import TaskRouter
from clm_lib.modeling.task_adapters import adapter_name, held_out_mask, routing_counts
from clm_lib.reporting import task_impact, tasks
from clm_lib.reporting.stores import StoreDown
from tests.clm_lib.reporting.tasks_history import HOSTILE_TASK, fitted_router, quarantine_solar, seed_tasks


@pytest.fixture
def seeded(cfg, mlflow_uri, tmp_path):
    cfg.registry.tracking_uri = mlflow_uri
    upgrade(cfg.database_url)
    seed_tasks(cfg, tmp_path / "runs")
    return cfg


def _row(overview, task):
    return next(r for r in overview.tasks if r.task == task)


def test_every_task_with_its_data_scores_adapter_and_routing(seeded):
    o = tasks.list_tasks(seeded)

    assert [r.task for r in o.tasks] == [*seeded.data.tasks, HOSTILE_TASK]
    assert o.champion.version == "2" and o.champion.mode == "per_task" and o.registry == "ok"
    routers, billing, thermostats = _row(o, "routers"), _row(o, "billing"), _row(o, "thermostats")
    assert (routers.curated_rows, billing.curated_rows, thermostats.curated_rows) == (350, 250, 0)  # failed b3 ignored
    assert billing.last_data_at == tasks.utc(tasks.datetime(2026, 11, 21, 9, 0))
    assert (routers.score, routers.change) == (77.5, -2.5) and (billing.score, billing.change) == (70.0, None)
    assert [(p.version, p.score) for p in routers.trend] == [("1", 80.0), ("2", 77.5)]
    assert [(p.version, p.score) for p in billing.trend] == [("1", None), ("2", 70.0)]
    assert (routers.adapter, routers.adapter_name, routers.rank, routers.size_bytes) == (
        "own",
        adapter_name("routers"),
        8,
        8 * 4096,
    )
    assert (billing.rank, billing.size_bytes) == (4, 4 * 4096)
    assert (thermostats.adapter, thermostats.score, thermostats.trend) == ("none", None, [])
    assert billing.router_accuracy == o.champion.router_accuracy_by_task["billing"]
    assert 0 < o.champion.router_accuracy <= 1 and o.champion.router_held_out > 0
    hostile = _row(o, HOSTILE_TASK)
    assert not hostile.configured and hostile.curated_rows == 3 and hostile.adapter == "none"


def test_a_shared_adapter_is_said_to_be_shared(cfg, mlflow_uri, tmp_path):
    cfg.registry.tracking_uri = mlflow_uri
    upgrade(cfg.database_url)
    seed_tasks(cfg, tmp_path / "runs", shared=True)

    o = tasks.list_tasks(cfg)

    assert o.champion.mode == "shared" and o.champion.router_accuracy is None
    billing = _row(o, "billing")
    assert (billing.adapter, billing.rank, billing.size_bytes, billing.router_accuracy) == ("shared", 16, 65536, None)
    impact = task_impact.removal_impact(cfg, "billing")
    assert not impact.removable and "one shared adapter" in impact.blockers[0]


def test_unknown_task_and_store_down(seeded, tmp_path):
    with pytest.raises(tasks.UnknownTask, match="'nope'"):
        tasks.get_task(seeded, "nope")
    seeded.database.url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(StoreDown, match="clm's database"):
        tasks.list_tasks(seeded)
    assert not (tmp_path / "none.db").exists()


def test_routing_counts_agree_with_the_routers_own_accuracy():
    router = fitted_router()
    counts = routing_counts(router)
    assert sum(sum(r.values()) for r in counts.values()) == router.held_out == int(held_out_mask(router).sum())
    for task, row in counts.items():
        assert row.get(task, 0) / sum(row.values()) == pytest.approx(router.accuracy_by_task[task])


def test_removal_impact_measures_routing_and_estimates_the_rest(seeded):
    impact = task_impact.removal_impact(seeded, "billing")

    assert impact.removable and impact.blockers == [] and impact.adapter == adapter_name("billing")
    assert impact.routing_basis == "router memory"
    [routers] = impact.routed_to_removed
    router = fitted_router()
    assert routers.prompts == sum(routing_counts(router)["routers"].values()) > 0
    assert routers.to_removed == routing_counts(router)["routers"].get("billing", 0)
    # With billing gone, the refit router has only routers left: every billing prompt goes there.
    assert impact.removed_prompts_go_to == {"routers": sum(routing_counts(router)["billing"].values())}
    refit = TaskRouter.fit({}, previous=router, drop=["billing"], **router.settings)
    assert impact.router_accuracy_after == refit.accuracy == 1.0
    assert impact.router_accuracy_before == pytest.approx(router.accuracy)
    assert impact.scores == {"routers": 77.5}
    assert impact.data_tasks_after == [t for t in seeded.data.tasks if t != "billing"]
    shares = {s.task: s for s in impact.replay.shares}
    # routers 100 x 1.5 against billing 60 x 1: 71.4% / 28.6% now; routers alone after.
    assert (shares["routers"].share_before, shares["billing"].share_before) == (71.4, 28.6)
    assert (shares["routers"].share_after, shares["billing"].share_after) == (100.0, 0.0)
    assert "billing's 60 buffer records leave the buffer" in impact.replay.note


def test_what_cannot_be_removed_says_why(seeded):
    assert task_impact.removal_impact(seeded, "thermostats").blockers == ["version 2 has no adapter for thermostats"]
    with pytest.raises(tasks.UnknownTask):
        task_impact.removal_impact(seeded, "nope")


def test_addition_impact(seeded):
    quarantine_solar(seeded, 3)

    impact = task_impact.addition_impact(seeded, " solar ")

    assert impact.task == "solar" and impact.quarantined == 3 and impact.quarantined_by_reason == {"unknown_task": 3}
    assert impact.curated_rows == 0 and impact.data_tasks_after == [*seeded.data.tasks, "solar"]
    shares = {s.task: (s.share_before, s.share_after) for s in impact.replay.shares}
    # task_balanced, buffer 2000: three tasks get up to 666 each, so both keep their records; solar gets 666.
    assert shares["solar"][0] == 0.0 and shares["solar"][1] == pytest.approx(100 * 666 / (150 + 60 + 666), abs=0.1)
    assert "land their files again" in impact.notes[0]
    assert task_impact.addition_impact(seeded, "wind").quarantined == 0


@pytest.mark.parametrize(
    ("name", "problem"),
    [("billing", "already in data.tasks"), ("", "a task name is"), ("a b", "a task name is"), ("x" * 65, "1-64"),
     ("impact", "reserved"), ("../etc", "a task name is"), ("<b>", "a task name is")],
)  # fmt: skip
def test_bad_new_names_name_the_field(seeded, name, problem):
    with pytest.raises(task_impact.BadTaskName, match=problem) as err:
        task_impact.addition_impact(seeded, name)
    assert err.value.field == "add"
