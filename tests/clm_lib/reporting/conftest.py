"""A small but complete clm history in a real clm database and a real MLflow registry (SQLite store):
three candidates and a failed run, two ingestion batches, alias moves."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clm_lib import audit
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import Evaluation, GateDecision, IngestionBatch, TrainingRun

MODEL = "clm-assistant"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow store. Migrating one takes ~7 s here, so it is done once and copied."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(mlflow_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def clean_env(monkeypatch):
    # These win over the config file; a developer's shell must not leak into the tests.
    for var in ("CLM_DATABASE_URL", "MLFLOW_TRACKING_URI", "CLM_DATA_URI"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def history_db(tmp_path: Path) -> str:
    """clm's database, migrated, holding the history described in :func:`seed_history`."""
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_history(url)
    return url


@pytest.fixture
def history_registry(mlflow_uri: str) -> str:
    """MLflow with versions 1-3 of the model; champion -> 2, challenger -> 3."""
    register_versions(mlflow_uri, versions=3, aliases={"champion": "2", "challenger": "3"})
    return mlflow_uri


def register_versions(tracking_uri: str, versions: int, aliases: dict[str, str]) -> None:
    """Register ``versions`` trivial model versions, tagged with their training run, and set aliases."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("clm")
    client.create_registered_model(MODEL)
    for i in range(1, versions + 1):
        run = client.create_run(experiment, run_name=f"tr-00{i}")
        client.set_terminated(run.info.run_id)
        client.create_model_version(
            MODEL, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
            tags={"clm.training_run_id": f"tr-00{i}"},
        )  # fmt: skip
    for alias, version in aliases.items():
        client.set_registered_model_alias(MODEL, alias, version)


def seed_history(db_url: str) -> None:
    """tr-001 learns routers (v1), tr-002 adds billing (v2, promoted), tr-003 adds thermostats but forgets
    billing (v3, gate failed), tr-004 crashed before producing a model."""
    with session_scope(db_url) as s:
        s.add_all(
            [
                IngestionBatch(
                    id="b-1", source="landing/routers.jsonl", source_format="jsonl", file_sha256="a" * 64,
                    status="committed", rows_in=300, rows_curated=280, rows_quarantined=15, rows_duplicate=5,
                    task_counts={"routers": 280}, quarantine_reasons={"prompt_too_short": 15},
                    started_at=T0, finished_at=T0 + timedelta(seconds=4),
                ),
                IngestionBatch(
                    id="b-2", source="landing/thermostats.csv", source_format="csv", file_sha256="b" * 64,
                    status="committed", rows_in=500, rows_curated=430, rows_quarantined=50, rows_duplicate=20,
                    task_counts={"thermostats": 400, "billing": 30},
                    quarantine_reasons={"unknown_task": 20, "prompt_too_short": 30},
                    started_at=T0 + timedelta(days=2), finished_at=T0 + timedelta(days=2, seconds=7),
                ),
            ]
        )  # fmt: skip
        runs = [
            ("tr-001", "succeeded", "1", ["routers"], 280, 0),
            ("tr-002", "succeeded", "2", ["routers", "billing"], 250, 140),
            ("tr-003", "succeeded", "3", ["routers", "billing", "thermostats"], 400, 200),
            ("tr-004", "failed", None, ["routers", "billing", "thermostats"], 400, 200),
        ]
        for i, (run_id, status, version, tasks, new, replay) in enumerate(runs):
            s.add(
                TrainingRun(
                    id=run_id, status=status, model_version=version, parent_model_version=None,
                    base_model="models/base", config_hash="c0ffee", tasks=tasks, new_rows=new, replay_rows=replay,
                    started_at=T0 + timedelta(days=i, hours=1), error="CUDA out of memory" if version is None else None,
                    finished_at=T0 + timedelta(days=i, hours=1, minutes=3), airflow_dag_id="clm_continual_training",
                    airflow_run_id=f"manual__{run_id}",
                )
            )  # fmt: skip
        s.flush()
        matrices = [
            ("tr-001", "1", ["routers"], [[91.0]], 91.0, None),
            ("tr-002", "2", ["routers", "billing"], [[91.0, None], [88.0, 90.5]], 89.25, -3.0),
            (
                "tr-003", "3", ["routers", "billing", "thermostats"],
                [[91.0, None, None], [88.0, 90.5, None], [86.0, 70.5, 93.0]], 83.17, -12.5,
            ),
        ]  # fmt: skip
        for i, (run_id, version, tasks, matrix, aa, bwt) in enumerate(matrices):
            s.add(
                Evaluation(
                    training_run_id=run_id, model_version=version, tasks=tasks, matrix=matrix,
                    scores=dict(zip(tasks, matrix[-1], strict=True)), average_accuracy=aa, backward_transfer=bwt,
                    created_at=T0 + timedelta(days=i, hours=2),
                )
            )  # fmt: skip
        s.add_all(
            [
                GateDecision(model_name=MODEL, model_version="1", champion_version=None, passed=True,
                             reasons=["no champion yet", "routers: new task at 91.0 (minimum 0.0) ok"],
                             decided_at=T0 + timedelta(hours=3)),
                GateDecision(model_name=MODEL, model_version="2", champion_version="1", passed=True,
                             reasons=["routers: 91.0 -> 88.0 (-3.0; budget -5.0) ok"],
                             decided_at=T0 + timedelta(days=1, hours=3)),
                GateDecision(model_name=MODEL, model_version="3", champion_version="2", passed=False,
                             reasons=["billing: 90.5 -> 70.5 (-20.0; budget -5.0) REGRESSED"],
                             decided_at=T0 + timedelta(days=2, hours=3)),
                GateDecision(model_name="another-model", model_version="3", champion_version=None, passed=True,
                             reasons=["belongs to another registered model"], decided_at=T0),
            ]
        )  # fmt: skip
        audit.record(s, action="alias.champion", target=f"{MODEL}@champion", actor="airflow:clm_promote",
                     from_value=None, to_value="1", reason="gate passed")  # fmt: skip
        audit.record(s, action="alias.champion", target=f"{MODEL}@champion", actor="alice",
                     from_value="1", to_value="2", reason="gate passed; bake window clean")  # fmt: skip
        audit.record(s, action="alias.challenger", target=f"{MODEL}@challenger", actor="airflow:clm_register",
                     from_value="2", to_value="3", reason="new candidate from tr-003")  # fmt: skip
