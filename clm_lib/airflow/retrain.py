"""A person asks for a retraining now: trigger ``clm_continual_training`` with force and a reason, audited.

It is one use of :func:`clm_lib.airflow.dag_trigger.request_run`: the run is triggered through Airflow's REST API
with the caller's own token, so Airflow's RBAC decides and the run's triggering user is the caller; ``force``
trains on whatever new curated rows there are (the volume rule is not asked). The request lands in clm's audit log
(``training.requested``) with the Airflow run id.
"""

from __future__ import annotations

from clm_lib.airflow import dag_trigger
from clm_lib.airflow.dag_trigger import AIRFLOW_URL_ENV, MAX_REASON, RunRefused, airflow_url
from clm_lib.config import ClmConfig
from clm_lib.reporting.training import TRAINING_DAG

__all__ = ["ACTION", "AIRFLOW_URL_ENV", "MAX_REASON", "RetrainRefused", "airflow_problem", "airflow_url",
           "request_retraining"]  # fmt: skip

ACTION = "training.requested"
RetrainRefused = RunRefused
"""The request itself is not acceptable (no reason, too long)."""


def request_retraining(cfg: ClmConfig, *, airflow_url: str, token: str, reason: str, actor: str) -> str:
    """Trigger ``clm_continual_training`` now with ``{"force": true, "reason": reason}`` as the holder of ``token``;
    returns the Airflow DAG run id. Raises :class:`~clm_lib.services.airflow_client.AirflowAPIError` when Airflow
    refuses or does not answer (nothing is audited then: nothing happened)."""
    if not (reason or "").strip():  # the screen words it for this action
        raise RetrainRefused("say why you retrain now: the reason is kept with the run and in the audit log")
    return dag_trigger.request_run(cfg, TRAINING_DAG, {"force": True}, airflow_url=airflow_url, token=token,
                                   reason=reason, actor=actor, action=ACTION)  # fmt: skip


def airflow_problem(exc: Exception) -> tuple[int, str]:
    """How to answer when Airflow refused or did not answer: its 4xx passed on, otherwise 503."""
    return dag_trigger.airflow_problem(exc, TRAINING_DAG)
