"""Removing a task end to end, in-process: two per-task updates make a champion with two adapters, then the removal
run (what ``clm_continual_training`` does with ``remove_task``) makes a candidate without one; it is evaluated,
registered with its lineage and gated like any candidate. Real Delta, MLflow and the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clm_lib.data import lake
from clm_lib.data.ingest import ingest_file
from clm_lib.db import upgrade
from clm_lib.demo.stream import write_demo_drops
from clm_lib.deploy.promotion import promote
from clm_lib.errors import TrainingError
from clm_lib.evaluation.evaluate import evaluate_run
from clm_lib.modeling.task_adapters import MANIFEST, load_router
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, client, register_run
from clm_lib.training.removal import REPORT_FILE, run_removal
from clm_lib.training.update import plan_update, run_update


def _cycle(cfg):
    plan = plan_update(cfg)
    assert plan.should_train, plan.reason
    run = run_update(cfg, trigger={"kind": "test"}, plan=plan)
    evaluate_run(cfg, run.id)
    version = register_run(cfg, run.id)
    return run, version, promote(cfg, version)


@pytest.fixture
def cfg(tiny_cfg, mlflow_uri):
    tiny_cfg.registry.tracking_uri = mlflow_uri
    tiny_cfg.training.adapters.mode = "per_task"
    tiny_cfg.training.adapters.router.examples_per_task = 40
    tiny_cfg.training.max_steps = 10
    tiny_cfg.evaluation.max_examples_per_task = 16
    tiny_cfg.drift.volume.initial_rows = tiny_cfg.drift.volume.min_new_rows = 50
    # The tiny model learns little in 10 steps: the gate must not be what this test is about.
    tiny_cfg.gate.min_new_task_accuracy = 0.0
    tiny_cfg.gate.max_task_drop = 100.0
    upgrade(tiny_cfg.database_url)
    return tiny_cfg


def test_removing_a_task_registers_a_version_without_its_adapter(tmp_path, cfg):
    import mlflow

    drops = write_demo_drops(tmp_path / "drops", tasks=cfg.data.tasks[:2], n_per_task=120, seed=3)
    ingest_file(cfg, drops[0])
    _cycle(cfg)
    ingest_file(cfg, drops[1])
    run2, v2, promo2 = _cycle(cfg)
    assert promo2.passed and alias_version(cfg, CHAMPION) == v2
    champion_adapter = Path(run2.output_dir) / "adapter"
    assert set(json.loads((champion_adapter / MANIFEST).read_text())["adapters"]) == {"routers", "billing"}

    run = run_removal(cfg, "billing", trigger={"kind": "manual", "reason": "billing moves out"})

    assert (run.status, run.parent_model_version, run.tasks, run.new_rows) == ("succeeded", v2, ["routers"], 0)
    report = run.strategies["task_removal"]
    assert report["task"] == "billing" and report["remaining"] == ["routers"]
    assert set(report["before"]) == set(report["after"]) == {"routers"}  # measured on routers' held-out set
    assert json.loads((Path(run.output_dir) / REPORT_FILE).read_text())["adapter"] == report["adapter"]
    assert run.metrics["removal_before.routers"] == report["before"]["routers"]
    # The champion's own folder is untouched; the replay buffer no longer holds billing.
    assert set(json.loads((champion_adapter / MANIFEST).read_text())["adapters"]) == {"routers", "billing"}
    assert set(lake.read_table(cfg, "replay").column("task").to_pylist()) == {"routers"}
    assert run.strategies["replay"]["buffer_tasks_after"] == {"routers": lake.read_table(cfg, "replay").num_rows}

    evaluation = evaluate_run(cfg, run.id)
    assert evaluation.scores.keys() == {"routers"} and evaluation.tasks == ["routers", "billing"]
    v3 = register_run(cfg, run.id)
    mv = client(cfg).get_model_version(cfg.registry.model_name, v3)
    assert mv.tags["clm.parent_version"] == v2 and json.loads(mv.tags["clm.trigger"])["remove_task"] == "billing"
    registered = Path(mlflow.artifacts.download_artifacts(f"models:/{cfg.registry.model_name}/{v3}/artifacts/adapter"))
    assert json.loads((registered / MANIFEST).read_text())["adapters"].keys() == {"routers"}
    assert not (registered / "adapters" / "task_billing").exists()
    assert load_router(registered).tasks == ["routers"]

    promo3 = promote(cfg, v3)
    assert promo3.passed and promo3.reasons[0] == "billing: removed on purpose (remove_task), not compared"
    assert alias_version(cfg, CHAMPION) == v3


def test_nothing_to_remove_from(cfg):
    with pytest.raises(TrainingError, match="no champion"):
        run_removal(cfg, "billing", trigger={})
