from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clm_lib.services import health, processes


def _answer(status: str = "healthy", beat: datetime | None = None) -> dict:
    stamp = (beat or datetime.now(UTC)).isoformat()
    return {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": status, "latest_scheduler_heartbeat": stamp},
        "triggerer": {"status": status, "latest_triggerer_heartbeat": stamp},
        "dag_processor": {"status": status, "latest_dag_processor_heartbeat": stamp},
    }


@pytest.fixture
def server():
    """A local HTTP server answering like Airflow's and MLflow's health endpoints."""
    routes: dict[str, tuple[int, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code, body = routes.get(self.path, (404, b"not found"))
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def test_job_is_healthy_only_with_a_fresh_heartbeat_of_its_own():
    now = time.time()
    assert health.job_health("scheduler", _answer(), started_at=now - 5) == health.Health(True, "healthy")
    # A heartbeat from before the process started belongs to the previous run.
    old = datetime.now(UTC) - timedelta(seconds=20)
    assert health.job_health("triggerer", _answer(beat=old), started_at=now).detail == "no heartbeat yet"
    assert health.job_health("dag-processor", _answer("unhealthy"), started_at=now - 60).detail == "heartbeat too old"
    never = _answer()
    never["dag_processor"]["latest_dag_processor_heartbeat"] = None
    assert health.job_health("dag-processor", never).detail == "no heartbeat yet"
    assert health.job_health("scheduler", None) == health.Health(False, "api-server not answering")


def test_api_server_health_needs_its_metadata_db():
    assert health.api_server_health(_answer()).ok
    broken = _answer() | {"metadatabase": {"status": "unhealthy"}}
    assert health.api_server_health(broken) == health.Health(False, "metadatabase unhealthy")
    assert health.api_server_health(None) == health.Health(False, "no answer")


def test_endpoints_are_read_over_http(server):
    base, routes = server
    routes[health.API_HEALTH_PATH] = (200, json.dumps(_answer()).encode())
    routes[health.MLFLOW_HEALTH_PATH] = (200, b"OK")
    assert health.fetch_json(base + health.API_HEALTH_PATH)["metadatabase"]["status"] == "healthy"
    assert health.mlflow_health(base).ok
    routes[health.MLFLOW_HEALTH_PATH] = (503, b"starting")
    routes[health.API_HEALTH_PATH] = (200, b"<html>not json</html>")
    assert not health.mlflow_health(base).ok
    assert health.fetch_json(base + health.API_HEALTH_PATH) is None
    assert health.fetch_json(base + "/nothing-here") is None
    assert health.fetch_json("http://127.0.0.1:9/closed", timeout=0.5) is None


def test_stack_status_of_a_stack_that_is_not_running(runtime_cfg):
    stack = processes.plan_stack(runtime_cfg, airflow_port=18003, mlflow_port=15003)
    rows = health.stack_status(runtime_cfg, stack, with_memory=True)
    assert [r.name for r in rows] == ["mlflow", "api-server", "scheduler", "dag-processor", "triggerer"]
    assert all(not r.alive and r.pid is None and r.health == health.Health(False, "not running") for r in rows)
    assert rows[1].address == "http://127.0.0.1:18003" and rows[2].address is None


def test_a_celery_worker_is_healthy_only_when_it_answers_a_ping_through_the_broker():
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = health.celery_health(f"redis://127.0.0.1:{closed}/0", "clm-x@host")
    assert not down.ok and down.detail.startswith("broker: ")
    # The Redis every machine of this project runs (STACK.md); no worker of that name listens on it.
    silent = health.celery_health("redis://127.0.0.1:6379/15", "clm-nobody@nowhere")
    assert silent == health.Health(False, "no answer to ping")
