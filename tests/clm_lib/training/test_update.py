"""The core of one cycle, in-process: ingest -> plan -> update -> evaluate -> register -> promote.

Airflow runs exactly these functions (tests/e2e drives them through the real scheduler); here they
run back to back so a regression in the glue shows in seconds, with real Delta, MLflow and models.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from sqlalchemy import select

from clm_lib.data import lake
from clm_lib.data.ingest import ingest_file
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import ConfigVersion, TrainingRun, utcnow
from clm_lib.demo.stream import write_demo_drops
from clm_lib.deploy.promotion import promote
from clm_lib.drift.policy import volume_rule
from clm_lib.errors import TrainingError
from clm_lib.evaluation.evaluate import evaluate_run
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, register_run
from clm_lib.training.update import plan_update, run_update


def _cycle(cfg, trigger):
    plan = plan_update(cfg)
    assert plan.should_train, plan.reason
    run = run_update(cfg, trigger=trigger, plan=plan, airflow_run_id="manual__x")
    evaluation = evaluate_run(cfg, run.id)
    version = register_run(cfg, run.id)
    return run, evaluation, version, promote(cfg, version)


def _curated(task: str, n: int) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist([
        {"id": f"{task}-{i}", "task": task, "prompt": f"p{i}", "response": "r", "split": "train", "source": "t",
         "batch_id": "b", "line": i, "ingested_at": now, "metadata": "{}"}
        for i in range(n)
    ])  # fmt: skip


def test_the_drift_policys_volume_rule_decides_unless_forced_or_requested(cfg, db_url):
    cfg.database.url = db_url
    assert plan_update(cfg).reason == "no curated data yet"
    lake.append(cfg, "curated", _curated("routers", 150))

    plan = plan_update(cfg)  # first training: drift.volume.initial_rows (200)
    assert (plan.should_train, plan.new_rows, plan.task_counts) == (False, 150, {"routers": 150})
    assert plan.reason == volume_rule(150, cfg.drift, first_training=True).explanation
    assert "initial-training threshold of 200" in plan.reason
    forced, requested = plan_update(cfg, force=True), plan_update(cfg, requested=True)
    assert forced.should_train and forced.reason == "forced, with 150 new curated rows"
    assert requested.should_train and requested.reason.startswith("requested by a drift check")
    cfg.drift.volume.initial_rows = 150
    assert plan_update(cfg).should_train

    trained = lake.table_version(cfg, "curated")
    with session_scope(db_url) as s:
        s.add(TrainingRun(id="r1", status="succeeded", base_model="b", config_hash="h", curated_version=trained,
                          finished_at=utcnow()))  # fmt: skip
    assert not plan_update(cfg, force=True).should_train  # nothing new since: even force has nothing to train on
    lake.append(cfg, "curated", _curated("billing", 300))
    plan = plan_update(cfg)  # after a training: drift.volume.min_new_rows (2000)
    assert (plan.should_train, plan.new_rows, plan.previous_curated_version) == (False, 300, trained)
    assert "volume trigger of 2000" in plan.reason
    cfg.drift.volume.min_new_rows = 300
    assert plan_update(cfg).should_train
    cfg.drift.volume.enabled = False
    plan = plan_update(cfg)
    assert not plan.should_train and "drift.volume.enabled" in plan.reason
    assert plan_update(cfg, force=True).should_train


@pytest.mark.slow
def test_two_updates_chain_lineage_and_replay(tmp_path, tiny_cfg, mlflow_uri):
    cfg = tiny_cfg
    cfg.registry.tracking_uri = mlflow_uri  # assigned, not model_copy'd: the field is validated (a secret)
    # ~200 training rows per drop: let the drift policy's volume rule start both updates.
    cfg.drift.volume.initial_rows = cfg.drift.volume.min_new_rows = 50
    upgrade(cfg.database_url)
    drops = write_demo_drops(tmp_path / "drops", tasks=cfg.data.tasks[:2], n_per_task=240, seed=3)

    assert not plan_update(cfg).should_train  # nothing curated yet
    ingest_file(cfg, drops[0])
    run1, ev1, v1, promo1 = _cycle(cfg, {"kind": "test"})
    assert (v1, promo1.passed, alias_version(cfg, CHAMPION)) == ("1", True, "1")
    assert run1.previous_curated_version is None and run1.replay_rows == 0
    assert ev1.tasks == ["routers"] and ev1.backward_transfer is None

    assert not plan_update(cfg).should_train  # the same data does not train twice
    with pytest.raises(TrainingError, match="nothing to train"):
        run_update(cfg, trigger={}, plan=plan_update(cfg))

    ingest_file(cfg, drops[1])
    run2, ev2, v2, promo2 = _cycle(cfg, {"kind": "test"})
    assert run2.parent_model_version == "1"
    assert run2.previous_curated_version == run1.curated_version < run2.curated_version
    assert run2.replay_rows > 0, "replay must mix earlier tasks into the second update"
    # The replay strategy read the buffer the first update wrote, and refilled it: its record is the run's.
    replay1, replay2 = run1.strategies["replay"], run2.strategies["replay"]
    assert replay2["buffer_version"] == run2.replay_version == replay1["buffer_version_written"]
    assert replay2["buffer_version_written"] == lake.table_version(cfg, "replay") > run2.replay_version
    assert replay2["buffer_tasks"] == replay1["buffer_tasks_after"] == {"routers": run2.replay_rows}
    assert set(replay2["buffer_tasks_after"]) == {"routers", "billing"}
    assert cfg.training.replay.task_weights == {}  # the user's config is never written to
    assert run2.tasks == ["routers", "billing"]
    assert ev2.tasks == ["routers", "billing"] and len(ev2.matrix) == 2
    assert ev2.matrix[0] == [ev1.scores["routers"], None]
    assert ev2.backward_transfer == pytest.approx(ev2.scores["routers"] - ev1.scores["routers"], abs=0.01)
    assert promo2.champion_before == "1"
    assert register_run(cfg, run2.id) == v2  # registering twice returns the same version
    with session_scope(cfg.database_url) as s:
        assert s.get(ConfigVersion, run2.config_hash) is not None
        assert [r.model_version for r in s.scalars(select(TrainingRun).order_by(TrainingRun.started_at))] == ["1", "2"]
