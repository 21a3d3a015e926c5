"""The REST client's retries, against a loopback server that answers 500 as Airflow does while its SQLite metadata
database is locked: a read or an unpause is tried again, a trigger never (it could start two runs)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clm_lib.services import airflow_client
from clm_lib.services.airflow_client import AirflowAPIError, AirflowClient


class _Busy(BaseHTTPRequestHandler):
    failures = 0
    seen: list[str] = []

    def _answer(self) -> None:
        _Busy.seen.append(self.command)
        if _Busy.failures > 0:
            _Busy.failures -= 1
            status, body = 500, {"detail": "database is locked"}
        else:
            status, body = 200, {"dag_run_id": "manual__1", "dag_id": "clm_ingest", "is_paused": False}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_PATCH = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def busy(monkeypatch):
    monkeypatch.setattr(airflow_client, "RETRY_WAITS", (0.0, 0.0, 0.0))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Busy.seen = []
    client = AirflowClient(f"http://127.0.0.1:{server.server_port}", "admin", "pw", _token="t")
    yield client
    server.shutdown()
    server.server_close()


def test_a_read_and_an_unpause_are_tried_again_after_a_500(busy):
    _Busy.failures = 2
    assert busy.run("clm_ingest", "manual__1")["dag_run_id"] == "manual__1"
    _Busy.failures = 3
    busy.unpause("clm_ingest")
    assert _Busy.seen == ["GET"] * 3 + ["PATCH"] * 4


def test_retries_end_and_the_error_names_the_request(busy):
    _Busy.failures = 10
    with pytest.raises(AirflowAPIError, match=r"GET /api/v2/dags/clm_ingest/dagRuns/manual__1 -> HTTP 500"):
        busy.run("clm_ingest", "manual__1")
    assert _Busy.seen == ["GET"] * 4


def test_a_trigger_is_never_sent_twice(busy):
    _Busy.failures = 1
    with pytest.raises(AirflowAPIError, match="HTTP 500"):
        busy.trigger("clm_ingest", {"reason": "x"})
    assert _Busy.seen == ["POST"]
