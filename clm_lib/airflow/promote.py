"""A person asks for a promotion of a registered version: trigger ``clm_promotion`` with it and a reason, audited.

One use of :func:`clm_lib.airflow.dag_trigger.request_run`, after :func:`clm_lib.reporting.next_promotion.promotable`
refused what cannot start. Nothing here moves traffic or aliases: the DAG's gate decides, then its steps deploy.
The Serving screen's promote button and ``POST /clm/api/v1/promote`` both call :func:`request_promotion`.
"""

from __future__ import annotations

from clm_lib.airflow import dag_trigger
from clm_lib.config import ClmConfig
from clm_lib.reporting.next_promotion import PROMOTION_DAG, promotable

ACTION = "promotion.requested"


def request_promotion(cfg: ClmConfig, version: str, *, airflow_url: str, token: str, reason: str, actor: str) -> str:
    """Trigger ``clm_promotion`` with ``{"version": version, "reason": reason}`` as the holder of ``token``;
    returns the Airflow DAG run id. Refuses first (nothing triggered, nothing audited): a bad reason
    (:class:`~clm_lib.airflow.dag_trigger.RunRefused`), an unknown version, the champion, a deployment under way
    (:func:`~clm_lib.reporting.next_promotion.promotable`)."""
    dag_trigger.checked_reason(reason)
    promotable(cfg, version)
    return dag_trigger.request_run(cfg, PROMOTION_DAG, {"version": version}, airflow_url=airflow_url, token=token,
                                   reason=reason, actor=actor, action=ACTION)  # fmt: skip


def airflow_problem(exc: Exception) -> tuple[int, str]:
    """How to answer when Airflow refused or did not answer: its 4xx passed on, otherwise 503."""
    return dag_trigger.airflow_problem(exc, PROMOTION_DAG)
