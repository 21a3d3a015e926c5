"""A person asks for a retraining now: trigger ``clm_continual_training`` with force and a reason, audited.

It asks Airflow (its REST API, not its ORM), so it lives on the Airflow-facing side; it imports no ``airflow``.

The run is triggered through Airflow's REST API with the caller's own token, so Airflow's RBAC decides and the
run's triggering user is the caller; ``force`` trains on whatever new curated rows there are (the volume rule is
not asked). The request lands in clm's audit log (``training.requested``) with the Airflow run id.
"""

from __future__ import annotations

import os
import re

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.errors import ClmError
from clm_lib.reporting.stores import DATABASE, down, missing_sqlite
from clm_lib.reporting.training import TRAINING_DAG
from clm_lib.services.airflow_client import AirflowClient

AIRFLOW_URL_ENV = "CLM_AIRFLOW_URL"
"""Where clm's screens and API reach Airflow's REST API to trigger a run. Unset: the address the request came in on
(the api-server that serves clm's pages and API serves Airflow's REST API too)."""
ACTION = "training.requested"
MAX_REASON = 2000


class RetrainRefused(ClmError):
    """The request itself is not acceptable (no reason, too long)."""


def airflow_url(request_root: str) -> str:
    """Airflow's root URL for the trigger call: ``CLM_AIRFLOW_URL``, else ``request_root``."""
    configured = os.environ.get(AIRFLOW_URL_ENV, "").strip()
    return (configured or request_root).rstrip("/")


def request_retraining(cfg: ClmConfig, *, airflow_url: str, token: str, reason: str, actor: str) -> str:
    """Trigger ``clm_continual_training`` now with ``{"force": true, "reason": reason}`` as the holder of ``token``;
    returns the Airflow DAG run id. Raises :class:`~clm_lib.services.airflow_client.AirflowAPIError` when Airflow
    refuses or does not answer (nothing is audited then: nothing happened)."""
    reason = (reason or "").strip()
    if not reason:
        raise RetrainRefused("say why you retrain now: the reason is kept with the run and in the audit log")
    if len(reason) > MAX_REASON:
        raise RetrainRefused(f"the reason is longer than {MAX_REASON} characters")
    missing = missing_sqlite(cfg.database_url)
    if missing:  # the audit entry could not be written: trigger nothing
        raise down(DATABASE, f"there is no database at {missing} yet; `clm init` creates it")
    conf = {"force": True, "reason": reason}
    client = AirflowClient(airflow_url, username="", password="", _token=token)
    with session_scope(cfg.database_url) as s:
        dag_run_id = client.trigger(TRAINING_DAG, conf)
        audit.record(s, action=ACTION, target=TRAINING_DAG, actor=actor, to_value=dag_run_id[:250], reason=reason,
                     details={"dag_run_id": dag_run_id, "conf": conf})  # fmt: skip
    return dag_run_id


_HTTP = re.compile(r"-> HTTP (\d{3})")


def airflow_problem(exc: Exception) -> tuple[int, str]:
    """How to answer when Airflow refused or did not answer: its 4xx passed on, otherwise 503."""
    found = _HTTP.search(str(exc))
    code = int(found.group(1)) if found else None
    if code in (401, 403):
        return 403, f"Airflow refused to trigger {TRAINING_DAG} for you: {exc}"
    if code == 404:
        return 404, f"Airflow has no DAG {TRAINING_DAG} (is the dag-processor running?): {exc}"
    if code is not None and 400 <= code < 500:
        return 409, f"Airflow did not accept the run: {exc}"
    return 503, f"Airflow's REST API cannot be reached: {exc}"
