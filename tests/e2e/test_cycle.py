"""One real continual-learning cycle through a real Airflow: drop -> ingest -> drift check -> train -> evaluate ->
register -> promote, and a last drop of more of the same that the drift check lets pass without a retraining.

Nothing here calls clm_lib's steps directly: files are dropped, DAGs are triggered through Airflow's REST
API, and Airflow's own scheduler, Asset events and LocalExecutor do the rest.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def cycle(airflow_stack, tmp_path_factory):
    from clm_lib.config import load_config
    from clm_lib.demo.incident import run_incident
    from clm_lib.demo.steady import write_steady_drop
    from clm_lib.demo.stream import generate_task, write_demo_drops
    from clm_lib.demo.traffic import Traffic
    from clm_lib.demo.walkthrough import run_walkthrough
    from clm_lib.services.airflow_client import AirflowClient

    cfg = load_config(environ=airflow_stack.env)
    folder = tmp_path_factory.mktemp("drops")
    drops = write_demo_drops(folder, tasks=cfg.data.tasks[:2], seed=7)
    drops.append(write_steady_drop(folder, cfg.data.tasks[:2], 400, seed=99, index=3))
    client = AirflowClient(airflow_stack.base_url, airflow_stack.username, airflow_stack.password)
    lines: list[str] = []
    router = f"http://127.0.0.1:{cfg.serving.router_port}"
    prompts = [r["prompt"] for t in cfg.data.tasks[:2] for r in generate_task(t, 20, seed=5)]
    try:
        with Traffic(router, cfg.registry.model_name, prompts, rate_per_s=4, max_seconds=1500) as traffic:
            rows = run_walkthrough(cfg, client, drops, echo=lines.append, timeout_per_update=400)
            incident = run_incident(cfg, client, echo=lines.append, env=airflow_stack.env)
    except Exception as exc:  # what the walkthrough printed is what tells why
        pytest.fail(f"{type(exc).__name__}: {exc}\n" + "\n".join(lines), pytrace=False)
    return cfg, client, rows, lines, incident, traffic


def test_new_tasks_drift_into_promoted_versions_and_more_of_the_same_does_not(cycle):
    _cfg, _client, rows, lines, *_ = cycle
    assert len(rows) == 3, lines
    assert [r.version for r in rows] == ["1", "2", None], lines
    assert rows[0].drift == "first data", lines
    assert rows[1].drift.startswith("retrain: ") and "task_mix" in rows[1].drift, lines
    assert rows[2].drift == "no retrain" and rows[2].curated > 300, lines
    assert [r.gate for r in rows[:2]] == ["promoted -> champion (canary)"] * 2, lines
    assert rows[1].tasks == 2 and rows[1].backward_transfer is not None
    assert all(r.quarantined > 0 for r in rows[:2]), "the demo drops plant bad records; they must be quarantined"


def test_a_planted_bad_version_is_rolled_back_by_the_canary_and_clm_rollback_works_by_hand(cycle):
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version

    cfg, _client, _rows, lines, incident, traffic = cycle
    assert incident.planted_version == "3", lines
    assert incident.promotion_status == "rolled_back" and "golden-set" in incident.promotion_outcome, lines
    assert incident.champion_after_canary == "2", lines
    assert incident.champion_after_manual == ["1", "2"], lines  # back to v1, then undone
    assert "champion: 2 -> 1" in incident.manual[0] and "champion: 1 -> 2" in incident.manual[1], lines
    assert alias_version(cfg, CHAMPION) == "2"
    # Steady client traffic ran through every promotion, the canary and both rollbacks without one failure.
    assert traffic.counts["ok"] > 50 and traffic.counts["failed"] == 0, (traffic.counts, traffic.versions)
    assert {"clm-assistant/1", "clm-assistant/2"} <= set(traffic.versions), traffic.versions


def test_the_drift_retraining_is_linked_to_its_reports(cycle):
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import DriftReport, TrainingRun

    cfg, *_ = cycle
    with session_scope(cfg.database_url) as s:
        second = s.scalars(select(TrainingRun).where(TrainingRun.airflow_run_id.is_not(None))
                           .order_by(TrainingRun.started_at)).all()[1]
        assert second.trigger["kind"] == "asset" and len(second.trigger["drift_checks"]) == 1
        event = second.trigger["events"][0]
        assert event["asset"] == "clm_retrain_request" and event["retrain"] is True
        linked = s.scalars(select(DriftReport).where(DriftReport.training_run_id == second.id)).all()
        assert {r.check_id for r in linked} == set(second.trigger["drift_checks"])
        assert "task_mix" in {r.detector for r in linked} and all(r.triggered for r in linked)
        last_check = s.scalars(select(DriftReport).order_by(DriftReport.created_at.desc())).first()
        assert last_check.retrain_requested is False and last_check.training_run_id is None


def test_state_in_clm_database_reconciles(cycle):
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry, Evaluation, IngestionBatch, TrainingRun

    cfg, *_ = cycle
    with session_scope(cfg.database_url) as s:
        batches = s.scalars(select(IngestionBatch)).all()
        assert batches and all(b.rows_in == b.rows_curated + b.rows_quarantined + b.rows_duplicate for b in batches)
        runs = s.scalars(select(TrainingRun).order_by(TrainingRun.started_at)).all()
        planted = [r for r in runs if r.trigger.get("kind") == "demo"]
        runs = [r for r in runs if r not in planted]
        assert [r.status for r in runs] == ["succeeded", "succeeded"] and len(planted) == 1
        assert runs[1].parent_model_version == runs[0].model_version == "1"
        assert runs[1].previous_curated_version == runs[0].curated_version
        assert runs[0].airflow_run_id and runs[0].trigger["kind"] == "asset"
        assert runs[1].replay_rows > 0
        last = s.scalars(select(Evaluation).order_by(Evaluation.id.desc())).first()
        assert len(last.matrix) == 2 and last.matrix[0][1] is None
        moves = [(a.action, a.to_value) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert ("alias.champion", "1") in moves and ("alias.champion", "2") in moves


def test_champion_loads_through_mlflow_in_a_fresh_process(cycle):
    cfg, *_ = cycle
    code = (
        "import mlflow, sys\n"
        f"mlflow.set_tracking_uri({cfg.tracking_uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{cfg.registry.model_name}@champion')\n"
        "out = m.predict(['My router keeps dropping the connection every evening'])\n"
        "assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], str), out\n"
        "print('answer:', out[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer:" in done.stdout


def test_lineage_is_on_the_model_version(cycle):
    import mlflow

    cfg, *_ = cycle
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    v = client.get_model_version_by_alias(cfg.registry.model_name, "champion")
    assert v.version == "2"
    for key in ("clm.delta.curated_version", "clm.config_hash", "clm.parent_version", "clm.airflow.run_id"):
        assert v.tags.get(key), key
    assert v.tags["clm.parent_version"] == "1"


def test_the_champions_lineage_runs_from_its_batches_to_its_deployments(cycle):
    """The Registry & lineage screen's graph of the version this cycle produced, end to end: the landing batches that
    fed it, the curated Delta versions, the training run, its parent, and the promotion that put it on traffic."""
    from clm_lib.reporting.lineage import lineage_of

    cfg, *_ = cycle
    g = lineage_of(cfg, "2")
    (run,) = g.of_kind("run")
    assert g.training_run_id == run.key, g.as_dict()
    assert [n.key for n in g.of_kind("parent")] == ["1"], g.as_dict()
    batches = g.of_kind("batch")
    promoted = [n for n in g.of_kind("deployment") if n.status == "promoted"]
    assert batches and promoted, g.as_dict()
    assert all(g.reaches(b.id, promoted[0].id) for b in batches), g.as_dict()
    # Each version was trained on its own new batches: v1's and v2's never overlap.
    assert not {b.key for b in batches} & {b.key for b in lineage_of(cfg, "1").of_kind("batch")}
