"""Two trained versions with their whole lineage in a real clm database, and a real MLflow registry with a third
version registered by hand: shared by the registry screen's reporting, REST and view tests.

- batches: ``b-1`` made curated v1; ``b-dup`` (all duplicates) and ``b-bad`` (failed) made nothing; ``b-2`` and
  ``b-3`` (a hostile file name) made curated v2 and v3;
- ``tr-1`` read curated up to v1 and produced v1; ``tr-2`` took the new rows of v2..v3, replay v4, was fine-tuned
  from v1 and produced v2 (another config); ``tr-3`` failed;
- deployments: v1 promoted (#1); v2 rolled back by its canary (#2), then promoted (#3);
- alias moves audited for this model (six) and one for another model; MLflow has champion 2, previous 1 and
  challenger 3 (set by hand: the audit log says challenger was deleted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clm_lib import audit
from clm_lib.db import session_scope
from clm_lib.db.models import (
    ConfigVersion,
    Deployment,
    Evaluation,
    GateDecision,
    IngestionBatch,
    TrainingRun,
)

MODEL = "clm-assistant"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOSTILE = '<img src=x onerror=alert("x")>.jsonl'
"""A landing file name no screen may render as markup."""
LEAKED = "postgresql://clm:hunter2@db.internal/mlflow"
CONFIG_A = {
    "training": {"learning_rate": 0.001, "epochs": 2},
    "data": {"tasks": ["routers", "billing"]},
    "registry": {"tracking_uri": "postgresql://clm:***@db.internal/mlflow", "model_name": MODEL},
}
CONFIG_B = {
    "training": {"learning_rate": 0.0005, "epochs": 2, "ewc_lambda": 10.0},
    "data": {"tasks": ["routers", "billing", "thermostats"]},
    "registry": {"tracking_uri": LEAKED, "model_name": MODEL},
}


def _batch(id_: str, source: str, curated: int, version: int | None, status: str = "committed", hours: int = 0):
    return IngestionBatch(
        id=id_, source=source, source_format="jsonl", file_sha256=id_.ljust(64, "0"), status=status, rows_in=curated,
        rows_curated=curated, curated_version=version, started_at=T0 + timedelta(hours=hours),
        finished_at=T0 + timedelta(hours=hours, seconds=5),
    )  # fmt: skip


def seed_lineage(db_url: str) -> None:
    with session_scope(db_url) as s:
        s.add_all([
            _batch("b-1", "landing/routers.jsonl", 280, 1),
            _batch("b-dup", "landing/routers-again.jsonl", 0, 1, hours=1),
            _batch("b-bad", "landing/broken.jsonl", 0, None, status="failed", hours=2),
            _batch("b-2", "landing/billing.jsonl", 200, 2, hours=30),
            _batch("b-3", f"landing/{HOSTILE}", 150, 3, hours=31),
            ConfigVersion(config_hash="cfg-a", content=CONFIG_A),
            ConfigVersion(config_hash="cfg-b", content=CONFIG_B),
        ])  # fmt: skip
        runs = [
            ("tr-1", "succeeded", "1", None, 1, None, None, "cfg-a", {"replay": {"ratio": 0.5}}, 0),
            ("tr-2", "succeeded", "2", "1", 3, 1, 4, "cfg-b", {"replay": {"ratio": 0.3}, "ewc": {"lambda": 10.0}}, 1),
            ("tr-3", "failed", None, "2", 3, 3, 4, "cfg-b", {}, 2),
        ]
        for run_id, status, version, parent, cur, prev, replay, config, strategies, day in runs:
            s.add(TrainingRun(
                id=run_id, status=status, model_version=version, parent_model_version=parent, base_model="models/base",
                config_hash=config, curated_version=cur, previous_curated_version=prev, replay_version=replay,
                new_rows=280 if prev is None else 350, replay_rows=0 if replay is None else 120, strategies=strategies,
                tasks=["routers"] if version == "1" else ["routers", "billing", "thermostats"],
                trigger={"kind": "asset" if day else "manual"}, airflow_dag_id="clm_continual_training",
                airflow_run_id=f"asset__{run_id}", started_at=T0 + timedelta(days=day, hours=8),
                finished_at=T0 + timedelta(days=day, hours=8, minutes=4),
            ))  # fmt: skip
        s.flush()
        s.add_all([
            Evaluation(training_run_id="tr-1", model_version="1", tasks=["routers"], matrix=[[91.0]],
                       scores={"routers": 91.0}, average_accuracy=91.0, created_at=T0 + timedelta(hours=9)),
            Evaluation(training_run_id="tr-2", model_version="2", tasks=["routers", "billing", "thermostats"],
                       matrix=[[91.0, None, None], [88.0, 90.5, 93.0]],
                       scores={"routers": 88.0, "billing": 90.5, "thermostats": 93.0}, average_accuracy=90.5,
                       backward_transfer=-3.0, created_at=T0 + timedelta(days=1, hours=9)),
            GateDecision(model_name=MODEL, model_version="1", passed=True, reasons=["no champion yet"],
                         decided_at=T0 + timedelta(hours=10)),
            GateDecision(model_name=MODEL, model_version="2", champion_version="1", passed=True,
                         reasons=["routers: 91.0 -> 88.0 (-3.0; budget -5.0) ok"],
                         decided_at=T0 + timedelta(days=1, hours=10)),
            GateDecision(model_name="other-model", model_version="2", passed=False, reasons=["not this model's"]),
        ])  # fmt: skip
        deployments = [
            ("promotion", "1", None, "promoted", "canary", 0),
            ("promotion", "2", "1", "rolled_back", "canary", 1),
            ("promotion", "2", "1", "promoted", "canary", 2),
        ]
        for kind, version, from_version, status, strategy, day in deployments:
            s.add(Deployment(kind=kind, model_name=MODEL, version=version, from_version=from_version, status=status,
                             strategy=strategy, actor="airflow:clm_promotion", reason="gate passed",
                             started_at=T0 + timedelta(days=day, hours=11),
                             finished_at=T0 + timedelta(days=day, hours=12)))  # fmt: skip
        moves = [
            ("challenger", None, "1", "airflow:clm_register", "new candidate from tr-1"),
            ("champion", None, "1", "airflow:ada", "gate passed; bake window clean"),
            ("challenger", "1", "2", "airflow:clm_register", "new candidate from tr-2"),
            ("champion", "1", "2", "airflow:Otto", "promoted after the second canary"),
            ("previous", None, "1", "airflow:Otto", "set from clm's deployment history"),
            ("challenger", "2", None, "airflow:Otto", "2 is champion"),
        ]
        for alias, old, new, actor, reason in moves:
            audit.record(s, action=f"alias.{alias}", target=f"{MODEL}@{alias}", actor=actor, from_value=old,
                         to_value=new, reason=reason)  # fmt: skip
        audit.record(s, action="alias.champion", target="other-model@champion", actor="airflow:ada", to_value="7",
                     reason="another model")  # fmt: skip
        audit.record(s, action="deploy.switch", target=f"{MODEL}/2", actor="system:clm", to_value="2", reason="x")


def register_in_mlflow(tracking_uri: str) -> None:
    """Versions 1-3 (v3 by hand, no clm run); champion 2, previous 1, challenger 3."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(MODEL)
    for i in (1, 2, 3):
        tags = {"clm.training_run_id": f"tr-{i}"} if i < 3 else {}
        client.create_model_version(MODEL, source=f"file:///nowhere/{i}", tags=tags)
    for alias, version in {"champion": "2", "previous": "1", "challenger": "3"}.items():
        client.set_registered_model_alias(MODEL, alias, version)
