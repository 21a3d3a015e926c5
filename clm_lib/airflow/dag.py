"""One shape for clm's DAGs: what every one of them shares, said once, so a DAG file holds only its own wiring."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from clm_lib.airflow.callbacks import dag_failed

START = datetime(2026, 1, 1)


def clm_dag(dag_id: str, *, schedule: Any, doc_md: str | None, **kwargs: Any) -> DAG:
    """A DAG with clm's defaults, any of which ``kwargs`` may override (they all go to :class:`DAG`):

    - no catch-up: a missed interval is no work to redo, every run reads the lake and registry as they are now;
    - one run at a time: runs share the lake, the adapter lineage and the serving slots;
    - tagged ``clm``, and a failed run raises an alert (``clm_lib/alerts``).
    """
    defaults = {"start_date": START, "catchup": False, "max_active_runs": 1, "tags": ["clm"],
                "on_failure_callback": dag_failed}  # fmt: skip
    return DAG(dag_id=dag_id, schedule=schedule, doc_md=doc_md, **(defaults | kwargs))
