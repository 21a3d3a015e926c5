"""MLflow as clm's model registry: candidates with full lineage, and audited alias moves.

Aliases, not stages: ``champion`` serves, ``challenger`` is the newest candidate not yet promoted.
MLflow keeps no alias history (mlflow#2169), so :func:`move_alias` writes every move to clm's
audit log in the caller's transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Evaluation, TrainingRun
from clm_lib.errors import RegistryError
from clm_lib.faults import fault_point
from clm_lib.registry.aliases import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

_REQUIREMENTS = ("torch", "transformers", "peft", "tokenizers", "mlflow", "pandas")
MODEL_ARTIFACT = "model"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:+-]+")


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
    fault_point("alias.after_mlflow_write")  # moved in MLflow, its audit entry not yet committed
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
        "clm.config_revision": str(run.config_revision or ""),
        "clm.base_model": run.base_model,
        "clm.delta.curated_version": str(run.curated_version),
        "clm.delta.previous_curated_version": str(run.previous_curated_version),
        "clm.delta.replay_version": str(run.replay_version),
        "clm.airflow.dag_id": run.airflow_dag_id or "",
        "clm.airflow.run_id": run.airflow_run_id or "",
        "clm.tasks": json.dumps(run.tasks),
        "clm.trigger": json.dumps(run.trigger),
        **_prompt_tag(run),
    }


def _prompt_tag(run: TrainingRun) -> dict[str, str]:
    """``clm.prompt``: the prompt format the version answers in (``clm_lib/modeling/prompt.py``), read from the
    adapter it was saved with (what serving and the golden set will use); none when the adapter is not here."""
    from clm_lib.modeling.prompt import describe, load_prompt_config

    adapter = Path(run.output_dir) / "adapter" if run.output_dir else None
    if adapter is None or not adapter.is_dir():
        return {}
    return {"clm.prompt": json.dumps(describe(load_prompt_config(adapter)))}


def register_candidate(
    cfg: ClmConfig, session: Session, run: TrainingRun, evaluation: Evaluation, *, actor: str | None = None
) -> str:
    """Make the run's model a model version and the challenger; returns the version.

    Safe to call again after a crash at any step (the Airflow task's retry): each step first looks for what an
    earlier try did (``docs/reliability.md``, "Training and registration"):

    1. the MLflow model version: one tagged ``clm.training_run_id`` with this run's id is reused, else the model is
       logged (or an earlier try's finished MLflow run reused) and a version created *with* its lineage tags, in one
       registry call, so no version ever exists that this lookup cannot find;
    2. clm's DB records it (``training_runs.model_version``, the evaluation's, an audited ``model.registered``),
       committed before the alias moves;
    3. the ``challenger`` alias, audited: done when the audit log already says this run's version became challenger.
    """
    version_, mlflow_run_id = run.model_version, None
    if version_ is None:
        version_, mlflow_run_id = registered_version(cfg, run.id)
    if version_ is None:
        version_, mlflow_run_id = _create_version(cfg, run, evaluation)
    fault_point("register.after_version_created")
    if run.model_version != version_:
        run.model_version = version_
        evaluation.model_version = version_
        audit.record(
            session,
            action="model.registered",
            target=f"{cfg.registry.model_name}/{version_}",
            actor=actor,
            to_value=version_,
            reason=f"candidate from training run {run.id}",
            details={"mlflow_run_id": mlflow_run_id, **lineage_tags(run)},
        )
    session.commit()  # the DB knows the version before the alias points at it
    fault_point("register.after_db_commit")
    _make_challenger(cfg, session, run.id, version_, actor=actor)
    return version_


def registered_version(cfg: ClmConfig, training_run_id: str) -> tuple[str | None, str | None]:
    """(version, its MLflow run id) of the model version registered from this training run, or (None, None).

    Found by its ``clm.training_run_id`` tag; if a registry holds two (made before registration was idempotent), the
    oldest wins and the others are logged."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(cfg).search_model_versions(
            f"name = '{cfg.registry.model_name}' and tags.`clm.training_run_id` = '{_filter_value(training_run_id)}'"
        )
    except MlflowException:
        return None, None  # no registered model yet
    found = sorted(found, key=lambda mv: int(mv.version))
    if not found:
        return None, None
    if len(found) > 1:
        log.warning(
            "training run %s has %d model versions (%s); using %s",
            training_run_id,
            len(found),
            ", ".join(mv.version for mv in found),
            found[0].version,
        )
    return str(found[0].version), found[0].run_id


def _filter_value(value: str) -> str:
    # MLflow's filter grammar has no escape for a quote; clm's run ids never hold one.
    if not _SAFE_ID.fullmatch(value):
        raise RegistryError(f"training run id {value!r} has characters a registry search cannot hold")
    return value


def _experiment(cfg: ClmConfig):
    """clm's experiment, made active; created with ``registry.artifacts_uri`` as its artifact location when set.

    A client on the backend store itself (no tracking server between) would otherwise put the experiment's
    artifacts in ``./mlruns`` of whichever process created it first."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if cfg.registry.artifacts_uri and mlflow.get_experiment_by_name(cfg.registry.experiment) is None:
        location = f"{cfg.registry.artifacts_uri.rstrip('/')}/{cfg.registry.experiment}"
        with contextlib.suppress(MlflowException):  # created meanwhile by a concurrent task
            mlflow.create_experiment(cfg.registry.experiment, artifact_location=location)
    return mlflow.set_experiment(cfg.registry.experiment)


def _create_version(cfg: ClmConfig, run: TrainingRun, evaluation: Evaluation) -> tuple[str, str]:
    import mlflow
    from mlflow.entities import RunStatus

    from clm_lib.registry.pyfunc import ClmModel

    adapter = Path(run.output_dir or "") / "adapter"
    if not adapter.is_dir():
        raise RegistryError(f"training run {run.id} has no adapter at {adapter}")
    c = client(cfg)
    experiment = _experiment(cfg)
    tags = lineage_tags(run)
    earlier = c.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`clm.training_run_id` = '{_filter_value(run.id)}'",
        order_by=["attributes.start_time DESC"],
    )
    for stale in (r for r in earlier if r.info.status == RunStatus.to_string(RunStatus.RUNNING)):
        c.set_terminated(stale.info.run_id, "KILLED")  # a try killed while logging: its model may be partial
    done = next((r for r in earlier if r.info.status == RunStatus.to_string(RunStatus.FINISHED)), None)
    if done is not None:
        mlflow_run_id = done.info.run_id  # a try killed after logging the model, before registering it
    else:
        with mlflow.start_run(run_name=run.id, tags=tags) as mlrun:
            mlflow.log_params(flat_params(run))
            mlflow.log_metrics(_metrics(run, evaluation))
            mlflow.log_dict({"tasks": evaluation.tasks, "matrix": evaluation.matrix}, "evaluation/accuracy_matrix.json")
            mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=ClmModel(),
                artifacts={"base": run.base_model, "adapter": str(adapter)},
                pip_requirements=_pins(),
                model_config={"max_new_tokens": 32},
            )
            fault_point("register.while_logging")
        mlflow_run_id = mlrun.info.run_id
        fault_point("register.after_model_logged")
    # What log_model(registered_model_name=...) does, with the tags in the same create call.
    mv = mlflow.register_model(
        f"runs:/{mlflow_run_id}/{MODEL_ARTIFACT}",
        cfg.registry.model_name,
        tags={
            **tags,
            "clm.mlflow_run_id": mlflow_run_id,
            "clm.average_accuracy": f"{evaluation.average_accuracy:.2f}",
        },
    )
    return str(mv.version), mlflow_run_id


def _make_challenger(cfg: ClmConfig, session: Session, training_run_id: str, version_: str, *, actor: str | None):
    """Point ``challenger`` at the new version once: not again when the audit log says it was (a later promotion
    may have moved it on since), and never at the serving champion."""
    target = f"{cfg.registry.model_name}@{CHALLENGER}"
    reason = f"new candidate from {training_run_id}"
    done = session.scalar(
        select(AuditEntry.id).where(
            AuditEntry.action == f"alias.{CHALLENGER}",
            AuditEntry.target == target,
            AuditEntry.to_value == version_,
            AuditEntry.reason == reason,
        )
    )
    if done is not None or alias_version(cfg, CHAMPION) == version_:
        return
    if alias_version(cfg, CHALLENGER) == version_:
        # An earlier try moved the alias and was killed before its audit entry committed: write the entry now.
        audit.record(
            session,
            action=f"alias.{CHALLENGER}",
            target=target,
            actor=actor,
            to_value=version_,
            reason=reason,
            details={"recorded_on_retry": True},
        )
        return
    move_alias(cfg, session, CHALLENGER, version_, actor=actor, reason=reason)


def flat_params(run: TrainingRun) -> dict[str, Any]:
    """The run's parameters as MLflow records them (the registry screen shows the same from clm's database)."""
    params: dict[str, Any] = {"new_rows": run.new_rows, "replay_rows": run.replay_rows}
    for name, conf in (run.strategies or {}).items():
        for key, value in (conf or {}).items():
            params[f"strategy.{name}.{key}"] = value
    return params


def _metrics(run: TrainingRun, evaluation: Evaluation) -> dict[str, float]:
    metrics = {f"accuracy.{task}": float(score) for task, score in evaluation.scores.items()}
    for task, stored in (evaluation.metrics or {}).items():  # every task metric, the primary one included
        metrics.update({f"{task}.{name}": float(v) for name, v in (stored.get("values") or {}).items()})
    metrics["average_accuracy"] = float(evaluation.average_accuracy)
    if evaluation.backward_transfer is not None:
        metrics["backward_transfer"] = float(evaluation.backward_transfer)
    for key, value in (run.metrics or {}).items():
        if isinstance(value, int | float):
            metrics[f"train.{key}"] = float(value)
    return metrics


def register_run(cfg: ClmConfig, training_run_id: str, *, actor: str | None = None) -> str:
    """Register the evaluated output of a training run; returns its model version.

    Idempotent: a retry after a crash finishes what the killed try started and never makes a second version
    (:func:`register_candidate`); calling it for a registered run returns that run's version."""
    from clm_lib.evaluation.evaluate import latest_evaluation

    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, training_run_id)
        if run is None:
            raise RegistryError(f"unknown training run {training_run_id}")
        evaluation = latest_evaluation(s, training_run_id)
        if evaluation is None:
            raise RegistryError(f"training run {training_run_id} has not been evaluated; evaluate it first")
        return register_candidate(cfg, s, run, evaluation, actor=actor)
