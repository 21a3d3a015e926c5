"""MLflow as clm's model registry: candidates with full lineage, and audited alias moves.

Aliases, not stages: ``champion`` serves, ``challenger`` is the newest candidate not yet promoted.
MLflow keeps no alias history (mlflow#2169), so :func:`move_alias` writes every move to clm's
audit log in the caller's transaction.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.errors import RegistryError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_REQUIREMENTS = ("torch", "transformers", "peft", "tokenizers", "mlflow", "pandas")


def client(cfg: ClmConfig):
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)


def alias_version(cfg: ClmConfig, alias: str) -> str | None:
    """The version an alias points at, or None if the model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(cfg).get_model_version_by_alias(cfg.registry.model_name, alias).version)
    except MlflowException:
        return None


def aliases(cfg: ClmConfig) -> dict[str, str]:
    """Every alias of the registered model and its version, in one registry call ({} before the first version)."""
    from mlflow.exceptions import MlflowException

    try:
        return {a: str(v) for a, v in client(cfg).get_registered_model(cfg.registry.model_name).aliases.items()}
    except MlflowException:
        return {}


def move_alias(
    cfg: ClmConfig, session: Session, alias: str, to_version: str | None, *, actor: str | None, reason: str
) -> str | None:
    """Point ``alias`` at ``to_version`` (None deletes it) and audit the move. Returns the old version."""
    c = client(cfg)
    name = cfg.registry.model_name
    before = alias_version(cfg, alias)
    if before == to_version:
        return before
    if to_version is None:
        c.delete_registered_model_alias(name, alias)
    else:
        c.set_registered_model_alias(name, alias, to_version)
    audit.record(
        session,
        action=f"alias.{alias}",
        target=f"{name}@{alias}",
        actor=actor,
        from_value=before,
        to_value=to_version,
        reason=reason,
    )
    log.info("%s@%s: %s -> %s (%s)", name, alias, before, to_version, reason)
    return before


def _pins() -> list[str]:
    pins = []
    for pkg in _REQUIREMENTS:
        try:
            pins.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:  # pragma: no cover - every clm install has them
            continue
    return pins


def lineage_tags(run: TrainingRun) -> dict[str, str]:
    """What a reviewer needs to say which data and settings made a version."""
    return {
        "clm.training_run_id": run.id,
        "clm.parent_version": run.parent_model_version or "",
        "clm.config_hash": run.config_hash,
        "clm.base_model": run.base_model,
        "clm.delta.curated_version": str(run.curated_version),
        "clm.delta.previous_curated_version": str(run.previous_curated_version),
        "clm.delta.replay_version": str(run.replay_version),
        "clm.airflow.dag_id": run.airflow_dag_id or "",
        "clm.airflow.run_id": run.airflow_run_id or "",
        "clm.tasks": json.dumps(run.tasks),
        "clm.trigger": json.dumps(run.trigger),
    }


def register_candidate(
    cfg: ClmConfig, session: Session, run: TrainingRun, evaluation: Evaluation, *, actor: str | None = None
) -> str:
    """Log the run's model to MLflow, register it as a new version and make it the challenger."""
    import mlflow

    from clm_lib.registry.pyfunc import ClmModel

    adapter = Path(run.output_dir or "") / "adapter"
    if not adapter.is_dir():
        raise RegistryError(f"training run {run.id} has no adapter at {adapter}")
    client(cfg)
    mlflow.set_experiment(cfg.registry.experiment)
    tags = lineage_tags(run)
    with mlflow.start_run(run_name=run.id, tags=tags) as mlrun:
        mlflow.log_params(_flat_params(run))
        mlflow.log_metrics(_metrics(run, evaluation))
        mlflow.log_dict({"tasks": evaluation.tasks, "matrix": evaluation.matrix}, "evaluation/accuracy_matrix.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ClmModel(),
            artifacts={"base": run.base_model, "adapter": str(adapter)},
            pip_requirements=_pins(),
            registered_model_name=cfg.registry.model_name,
            model_config={"max_new_tokens": 32},
        )
    version_ = str(info.registered_model_version)
    c = client(cfg)
    for key, value in {**tags, "clm.mlflow_run_id": mlrun.info.run_id}.items():
        c.set_model_version_tag(cfg.registry.model_name, version_, key, value)
    c.set_model_version_tag(
        cfg.registry.model_name, version_, "clm.average_accuracy", f"{evaluation.average_accuracy:.2f}"
    )
    run.model_version = version_
    evaluation.model_version = version_
    audit.record(
        session,
        action="model.registered",
        target=f"{cfg.registry.model_name}/{version_}",
        actor=actor,
        to_value=version_,
        reason=f"candidate from training run {run.id}",
        details={"mlflow_run_id": mlrun.info.run_id, **tags},
    )
    move_alias(cfg, session, CHALLENGER, version_, actor=actor, reason=f"new candidate from {run.id}")
    return version_


def _flat_params(run: TrainingRun) -> dict[str, Any]:
    params: dict[str, Any] = {"new_rows": run.new_rows, "replay_rows": run.replay_rows}
    for name, conf in (run.strategies or {}).items():
        for key, value in (conf or {}).items():
            params[f"strategy.{name}.{key}"] = value
    return params


def _metrics(run: TrainingRun, evaluation: Evaluation) -> dict[str, float]:
    metrics = {f"accuracy.{task}": float(score) for task, score in evaluation.scores.items()}
    metrics["average_accuracy"] = float(evaluation.average_accuracy)
    if evaluation.backward_transfer is not None:
        metrics["backward_transfer"] = float(evaluation.backward_transfer)
    for key, value in (run.metrics or {}).items():
        if isinstance(value, int | float):
            metrics[f"train.{key}"] = float(value)
    return metrics


def register_run(cfg: ClmConfig, training_run_id: str, *, actor: str | None = None) -> str:
    """Register the evaluated output of a training run; returns the new model version."""
    from clm_lib.evaluation.evaluate import latest_evaluation

    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, training_run_id)
        if run is None:
            raise RegistryError(f"unknown training run {training_run_id}")
        if run.model_version:
            return run.model_version  # a retried task must not register the same run twice
        evaluation = latest_evaluation(s, training_run_id)
        if evaluation is None:
            raise RegistryError(f"training run {training_run_id} has not been evaluated; evaluate it first")
        return register_candidate(cfg, s, run, evaluation, actor=actor)
