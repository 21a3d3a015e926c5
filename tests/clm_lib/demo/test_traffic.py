"""The demo's client traffic: loopback only, bounded, and honest about what answered."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clm_lib.demo.traffic import Traffic


class _Slot(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = 500 if body["prompt"] == "fail" else 200
        payload = json.dumps({"model": "clm-assistant/7", "choices": [{"text": "ok"}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slot)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_refuses_anything_but_loopback():
    with pytest.raises(ValueError, match="loopback only"):
        Traffic("http://10.0.0.5:8100", "m", ["hi"])


def test_stops_at_its_request_bound_and_counts_answers_by_version(server):
    with Traffic(server, "clm-assistant", ["hello", "fail"], rate_per_s=200, max_requests=6) as traffic:
        traffic._thread.join(timeout=10)
    assert not traffic._thread.is_alive()
    assert traffic.counts == {"ok": 3, "failed": 3}
    assert traffic.versions == {"clm-assistant/7": 3}


def test_no_router_yet_is_not_a_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with Traffic(f"http://127.0.0.1:{port}", "m", ["hi"], rate_per_s=100, max_requests=3) as traffic:
        traffic._thread.join(timeout=10)
    assert traffic.counts == {"no_router": 3}
