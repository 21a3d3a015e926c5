"""The core of one cycle, in-process: ingest -> plan -> update -> evaluate -> register -> promote.

Airflow runs exactly these functions (tests/e2e drives them through the real scheduler); here they
run back to back so a regression in the glue shows in seconds, with real Delta, MLflow and models.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.data.ingest import ingest_file
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import ConfigVersion, TrainingRun
from clm_lib.demo.stream import write_demo_drops
from clm_lib.deploy.promotion import promote
from clm_lib.errors import TrainingError
from clm_lib.evaluation.evaluate import evaluate_run
from clm_lib.registry.mlflow_registry import CHAMPION, alias_version, register_run
from clm_lib.training.update import plan_update, run_update

pytestmark = pytest.mark.slow


def _cycle(cfg, trigger):
    plan = plan_update(cfg)
    assert plan.should_train, plan.reason
    run = run_update(cfg, trigger=trigger, plan=plan, airflow_run_id="manual__x")
    evaluation = evaluate_run(cfg, run.id)
    version = register_run(cfg, run.id)
    return run, evaluation, version, promote(cfg, version)


def test_two_updates_chain_lineage_and_replay(tmp_path, tiny_cfg, mlflow_uri):
    cfg = tiny_cfg.model_copy(update={"registry": tiny_cfg.registry.model_copy(update={"tracking_uri": mlflow_uri})})
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
    assert run2.tasks == ["routers", "billing"]
    assert ev2.tasks == ["routers", "billing"] and len(ev2.matrix) == 2
    assert ev2.matrix[0] == [ev1.scores["routers"], None]
    assert ev2.backward_transfer == pytest.approx(ev2.scores["routers"] - ev1.scores["routers"], abs=0.01)
    assert promo2.champion_before == "1"
    assert register_run(cfg, run2.id) == v2  # registering twice returns the same version
    with session_scope(cfg.database_url) as s:
        assert s.get(ConfigVersion, run2.config_hash) is not None
        assert [r.model_version for r in s.scalars(select(TrainingRun).order_by(TrainingRun.started_at))] == ["1", "2"]


def test_replay_weights_come_from_the_last_evaluation(cfg, db_url):
    from clm_lib.db.models import Evaluation
    from clm_lib.training.update import _with_replay_weights

    cfg.database.url = db_url
    assert _with_replay_weights(cfg) is cfg  # no evaluation yet: plain replay
    with session_scope(db_url) as s:
        s.add(TrainingRun(id="r2", status="succeeded", base_model="b", config_hash="h"))
        s.flush()
        s.add(
            Evaluation(
                training_run_id="r2",
                tasks=["routers", "billing", "thermostats"],
                scores={"routers": 60.0, "billing": 92.0, "thermostats": 70.0},
                matrix=[[90.0, None, None], [80.0, 90.0, None], [60.0, 92.0, 70.0]],
                average_accuracy=74.0,
            )
        )
    cfg.training.replay.task_weights = {"thermostats": 0.7}
    weighted = _with_replay_weights(cfg)
    # routers fell 20 points (2 -> 3), billing gained 2 (0.8); a weight set by hand wins.
    assert weighted.training.replay.task_weights == {"routers": 3.0, "billing": 0.8, "thermostats": 0.7}
    assert cfg.training.replay.task_weights == {"thermostats": 0.7}  # the caller's config is left alone
    cfg.training.replay.dynamic = False
    assert _with_replay_weights(cfg) is cfg
