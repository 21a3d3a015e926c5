"""A person asks Airflow for a DAG run now (retrain, promote, roll back, ...): one reasoned, audited trigger.

It asks Airflow (its REST API, not its ORM), so it lives on the Airflow-facing side; it imports no ``airflow``.

The run is triggered with the caller's own token, so Airflow's RBAC decides and the run's triggering user is the
caller. The reason travels in the run's conf and lands in clm's audit log under the caller's ``action`` with the
Airflow run id. Nothing is audited when Airflow refuses: nothing happened.
"""

from __future__ import annotations

import os
import re
from typing import Any

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.errors import ClmError
from clm_lib.reporting.stores import DATABASE, down, missing_sqlite
from clm_lib.services.airflow_client import AirflowClient

AIRFLOW_URL_ENV = "CLM_AIRFLOW_URL"
"""Where clm's screens and API reach Airflow's REST API to trigger a run. Unset: the address the request came in on
(the api-server that serves clm's pages and API serves Airflow's REST API too)."""
MAX_REASON = 2000


class RunRefused(ClmError):
    """The request itself is not acceptable (no reason, too long): nothing was asked of Airflow."""


def airflow_url(request_root: str) -> str:
    """Airflow's root URL for the trigger call: ``CLM_AIRFLOW_URL``, else ``request_root``."""
    configured = os.environ.get(AIRFLOW_URL_ENV, "").strip()
    return (configured or request_root).rstrip("/")


def checked_reason(reason: str | None) -> str:
    """The reason stripped; :class:`RunRefused` when it is empty or longer than :data:`MAX_REASON`."""
    reason = (reason or "").strip()
    if not reason:
        raise RunRefused("say why: the reason is kept with the run and in the audit log")
    if len(reason) > MAX_REASON:
        raise RunRefused(f"the reason is longer than {MAX_REASON} characters")
    return reason


def request_run(
    cfg: ClmConfig,
    dag_id: str,
    conf: dict[str, Any],
    *,
    airflow_url: str,
    token: str,
    reason: str,
    actor: str,
    action: str,
) -> str:
    """Trigger ``dag_id`` with ``conf`` plus ``{"reason": reason}`` as the holder of ``token``, audited as
    ``action``; returns the Airflow DAG run id. Raises :class:`RunRefused` for a missing or overlong reason,
    :class:`~clm_lib.reporting.stores.StoreDown` when clm's database does not exist (the audit entry could not be
    written), :class:`~clm_lib.services.airflow_client.AirflowAPIError` when Airflow refuses or does not answer."""
    reason = checked_reason(reason)
    missing = missing_sqlite(cfg.database_url)
    if missing:
        raise down(DATABASE, f"there is no database at {missing} yet; `clm init` creates it")
    conf = {**conf, "reason": reason}
    client = AirflowClient(airflow_url, username="", password="", _token=token)
    with session_scope(cfg.database_url) as s:
        dag_run_id = client.trigger(dag_id, conf)
        audit.record(s, action=action, target=dag_id, actor=actor, to_value=dag_run_id[:250], reason=reason,
                     details={"dag_run_id": dag_run_id, "conf": conf})  # fmt: skip
    return dag_run_id


_HTTP = re.compile(r"-> HTTP (\d{3})")


def airflow_problem(exc: Exception, dag_id: str) -> tuple[int, str]:
    """How to answer when Airflow refused or did not answer: its 4xx passed on, otherwise 503."""
    found = _HTTP.search(str(exc))
    code = int(found.group(1)) if found else None
    if code in (401, 403):
        return 403, f"Airflow refused to trigger {dag_id} for you: {exc}"
    if code == 404:
        return 404, f"Airflow has no DAG {dag_id} (is the dag-processor running?): {exc}"
    if code is not None and 400 <= code < 500:
        return 409, f"Airflow did not accept the run: {exc}"
    return 503, f"Airflow's REST API cannot be reached: {exc}"
