"""The ``server`` section: what ``clm up`` runs, where it listens, and which Airflow executor runs the tasks.

The same DAG files run on either executor; only this section (and the stores' URLs) differ between the laptop
stack and the production-like one (``include/profiles/production.yaml``, docs/production.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from clm_lib.redaction import SecretUrl


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CeleryConfig(_Section):
    """Airflow's CeleryExecutor: the broker, and the worker ``clm up`` starts on this machine."""

    broker_url: SecretUrl = SecretUrl("redis://127.0.0.1:6379/0")
    """The Celery broker (Redis or RabbitMQ). clm does not start it: Debian's ``redis-server`` here, yours in
    production. Give each clm install its own Redis database number (the ``/0``) or RabbitMQ virtual host: workers
    on one broker take each other's tasks. A secret (it may hold a password)."""
    concurrency: int = Field(default=2, ge=1, le=64)
    """Tasks the local worker runs at once (``airflow celery worker --concurrency``). Workers started on other
    machines (``airflow celery worker`` with the same ``airflow.cfg``) add their own."""
    queue: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """The queue clm's tasks go to and the local worker consumes (Airflow's ``[operators] default_queue``)."""


class ServerConfig(_Section):
    """The processes ``clm up`` starts, all bound to 127.0.0.1, and the executor that runs the tasks."""

    host: Literal["127.0.0.1", "localhost"] = "127.0.0.1"
    """Loopback only: clm never listens on other interfaces."""
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    parallelism: int = Field(default=4, ge=1)
    """Airflow ``[core] parallelism``: tasks running at once across the install (LocalExecutor: its worker
    processes, which it forks at start; keep it small on a small machine)."""
    executor: Literal["local", "celery"] = "local"
    """``local``: LocalExecutor, tasks run in processes the scheduler forks (one machine; works on SQLite).
    ``celery``: CeleryExecutor, tasks go through ``celery.broker_url`` to Celery workers (``clm up`` starts one);
    needs Airflow's metadata database on PostgreSQL (``airflow_database_url``)."""
    airflow_database_url: SecretUrl | None = None
    """Airflow's metadata database (SQLAlchemy URL). Default: ``$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, else the
    one the last ``clm init`` used, else SQLite under the Airflow home. A secret, like ``database.url``."""
    celery: CeleryConfig = CeleryConfig()
