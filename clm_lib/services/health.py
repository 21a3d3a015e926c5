"""Health of the running components, from their own endpoints.

The API server's ``/api/v2/monitor/health`` reports the metadata DB and the latest heartbeat of the scheduler,
dag-processor and triggerer jobs; MLflow answers ``/health``. A heartbeat only counts if it is younger than the
process that should be sending it: the job rows of a previous run can look healthy for 30 s after it died.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from clm_lib.config import ClmConfig
from clm_lib.redaction import redact_text
from clm_lib.services import processes
from clm_lib.services.processes import Stack

API_HEALTH_PATH = "/api/v2/monitor/health"
MLFLOW_HEALTH_PATH = "/health"
# Field of the health answer that holds each job's heartbeat.
HEARTBEAT_FIELD = {
    "scheduler": "latest_scheduler_heartbeat",
    "dag-processor": "latest_dag_processor_heartbeat",
    "triggerer": "latest_triggerer_heartbeat",
}
_HEALTH_KEY = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


@dataclass(frozen=True)
class Health:
    """One component's health: ``ok`` and a short word or phrase for people."""

    ok: bool
    detail: str


# Generous: a single-worker API server on a busy 2-core machine can take seconds to answer.
TIMEOUT_S = 5.0


def fetch_json(url: str, timeout: float = TIMEOUT_S) -> dict | None:
    """GET ``url`` and decode JSON; None when nothing (or no JSON) answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError):
        return None


def http_ok(url: str, timeout: float = TIMEOUT_S) -> bool:
    """True when ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def api_server_health(answer: dict | None) -> Health:
    """The API server is healthy when it answers and reaches its metadata DB."""
    if answer is None:
        return Health(False, "no answer")
    db = (answer.get("metadatabase") or {}).get("status")
    return Health(db == "healthy", "healthy" if db == "healthy" else f"metadatabase {db}")


def job_health(component: str, answer: dict | None, started_at: float | None = None) -> Health:
    """Health of a heartbeating job (scheduler, dag-processor, triggerer) from the API server's answer.

    ``started_at`` (epoch seconds) is when the process started; an older heartbeat belongs to someone else.
    """
    if answer is None:
        return Health(False, "api-server not answering")
    entry = answer.get(_HEALTH_KEY[component]) or {}
    beat = entry.get(HEARTBEAT_FIELD[component])
    if not beat:
        return Health(False, "no heartbeat yet")
    if started_at is not None and datetime.fromisoformat(beat).timestamp() < started_at - 1.0:
        return Health(False, "no heartbeat yet")
    if entry.get("status") != "healthy":
        return Health(False, "heartbeat too old")
    return Health(True, "healthy")


def mlflow_health(base_url: str) -> Health:
    """MLflow answers ``/health`` with 200."""
    ok = http_ok(base_url + MLFLOW_HEALTH_PATH)
    return Health(ok, "healthy" if ok else "no answer")


def kafka_health(port: int | None) -> Health:
    """The local Kafka-protocol broker accepts connections on 127.0.0.1 (it has no HTTP health route)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port or 0), TIMEOUT_S).close()
    except OSError:
        return Health(False, "no answer")
    return Health(True, "healthy")


def broker_problem(broker_url: str) -> str | None:
    """Why the Celery broker at ``broker_url`` cannot be reached, or None when it answers."""
    from kombu import Connection
    from kombu.exceptions import OperationalError

    conn = Connection(broker_url, connect_timeout=2)
    try:
        conn.ensure_connection(max_retries=1, timeout=2)
    except (OperationalError, OSError) as exc:
        return redact_text(str(exc)) or type(exc).__name__
    finally:
        conn.release()
    return None


def celery_health(broker_url: str, worker: str) -> Health:
    """The local Celery worker answers a ping through the broker: Celery's own liveness check, which also proves
    the broker takes messages (a live process with a broker gone would run nothing)."""
    from celery import Celery
    from kombu.exceptions import OperationalError

    app = Celery(broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0, broker_connection_timeout=2)
    try:
        replies = app.control.ping(destination=[worker], timeout=1.0)
    except (OperationalError, OSError) as exc:
        return Health(False, f"broker: {type(exc).__name__}")
    finally:
        app.close()
    return Health(True, "healthy") if replies else Health(False, "no answer to ping")


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``clm status``."""

    name: str
    pid: int | None
    address: str | None
    health: Health
    rss: int = 0
    pss: int = 0
    """Memory of the process and its descendants, in bytes."""

    @property
    def alive(self) -> bool:
        return self.pid is not None


def stack_status(cfg: ClmConfig, stack: Stack, *, with_memory: bool = False) -> list[ComponentStatus]:
    """Liveness and health of every component of ``stack`` (one request to each server)."""
    comps = stack.components()
    procs = {c.name: processes.find(cfg, c) for c in comps}
    answer = None
    if procs.get("api-server"):
        # One retry, like any health probe with a failure threshold: a single slow answer on a busy machine
        # (seen about once in 40 checks while tasks start) is not an outage.
        answer = fetch_json(stack.airflow_url + API_HEALTH_PATH) or fetch_json(stack.airflow_url + API_HEALTH_PATH)
    rows = []
    for comp in comps:
        proc = procs[comp.name]
        if proc is None:
            health = Health(False, "not running")
        elif comp.name == "api-server":
            health = api_server_health(answer)
        elif comp.name == "mlflow":
            health = mlflow_health(stack.mlflow_url)
        elif comp.name == "kafka":
            health = kafka_health(stack.kafka_port)
        elif comp.name == "celery-worker":
            health = celery_health(cfg.server.celery.broker_url.get_secret_value(), stack.celery_worker_name)
        else:
            health = job_health(comp.name, answer, started_at=_started(cfg, comp.name))
        rss, pss = processes.memory(processes.family(proc)) if proc is not None and with_memory else (0, 0)
        rows.append(ComponentStatus(comp.name, proc.pid if proc else None, comp.address, health, rss, pss))
    return rows


def _started(cfg: ClmConfig, name: str) -> float | None:
    """When ``clm up`` started the component, by the wall clock that heartbeats are stamped with: its pid file's
    mtime (psutil's create_time moves when that clock is stepped; see process_identity)."""
    try:
        return processes.pid_file(cfg, name).stat().st_mtime
    except OSError:
        return None
