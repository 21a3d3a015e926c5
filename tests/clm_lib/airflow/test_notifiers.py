"""Alerts delivered for real: to an aiosmtpd SMTP server and an http.server webhook receiver on 127.0.0.1, both
started by the test and stopped by it; an unreachable one is a recorded, retried failure that never raises."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from clm_lib.airflow.notifiers import AlertWebhookNotifier, senders
from clm_lib.alerts import raise_alert
from clm_lib.alerts.config import AlertsConfig
from clm_lib.alerts.core import view
from clm_lib.alerts.delivery import deliver_pending
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import AlertDelivery

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
            "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 5}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(conn))
    yield inbox
    controller.stop()


@pytest.fixture
def webhook(monkeypatch):
    received: list[dict] = []
    status = {"code": 200, "location": None}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"body": json.loads(body), "auth": self.headers.get("Authorization")})
            self.send_response(status["code"])
            if status["location"]:
                self.send_header("Location", status["location"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    monkeypatch.setenv("CLM_TEST_WEBHOOK_TOKEN", "tok-123")
    yield f"http://127.0.0.1:{server.server_port}/hook", received, status
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _db(tmp_path):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    return url


def _raise(url, cause="gate_refused:m/7", message="gate refused v7: task drop 9.1 > 5.0 on {{ secrets }}"):
    with session_scope(url) as s:
        return raise_alert(s, kind="gate_refused", cause=cause, severity="critical", message=message,
                           links=[{"label": "Report", "href": "/report/7"}], now=T0).id  # fmt: skip


def _statuses(url):
    with session_scope(url) as s:
        return [(d.channel, d.status) for d in s.scalars(select(AlertDelivery).order_by(AlertDelivery.id))]


@pytest.mark.timeout(60)
def test_alerts_reach_a_real_smtp_server_and_a_webhook_once_per_cause(tmp_path, smtp_server, webhook):
    url_hook, received, _ = webhook
    url = _db(tmp_path)
    cfg = AlertsConfig.model_validate({
        "email": {"enabled": True, "to": ["ops@example.com"], "from_email": "clm@example.com",
                  "smtp_conn_id": "smtp_alerts"},
        "webhook": {"enabled": True, "url": url_hook, "token_env": "CLM_TEST_WEBHOOK_TOKEN"},
    })  # fmt: skip
    alert_id = _raise(url)
    _raise(url)  # the same cause again: one alert, counted twice
    report = deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=1))
    assert (report.sent, report.failed) == (2, 0), report.summary()
    assert deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=2)).sent == 0

    [(rcpt, raw)] = smtp_server.messages
    mail = message_from_bytes(raw)
    assert rcpt == ["ops@example.com"] and mail["From"] == "clm@example.com"
    assert "gate refused v7" in mail["Subject"] and "x2" in mail["Subject"]
    body = mail.get_payload()[0].get_payload(decode=True).decode()
    assert "{{ secrets }}" in body and "/report/7" in body  # sent as text, never rendered as a template

    [hit] = received
    assert hit["auth"] == "Bearer tok-123"
    assert hit["body"]["id"] == alert_id and hit["body"]["cause"] == "gate_refused:m/7" and hit["body"]["count"] == 2
    assert _statuses(url) == [("email", "sent"), ("webhook", "sent")]


@pytest.mark.timeout(60)
def test_unreachable_notifiers_are_recorded_and_retried_never_raised(tmp_path, webhook):
    url = _db(tmp_path)
    dead = f"http://127.0.0.1:{_free_port()}/hook"
    cfg = AlertsConfig.model_validate({
        "email": {"enabled": True, "to": ["ops@example.com"], "from_email": "clm@example.com",
                  "smtp_conn_id": "smtp_nowhere"},
        "webhook": {"enabled": True, "url": dead, "timeout_seconds": 2},
        "backoff_seconds": 30,
    })  # fmt: skip
    _raise(url)
    report = deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=1))
    assert (report.sent, report.failed) == (0, 2)
    with session_scope(url) as s:
        errors = {d.channel: d.error for d in s.scalars(select(AlertDelivery))}
    assert "refused" in errors["webhook"].lower() and errors["email"]
    # the receiver is back (config edited to it): the retry after the backoff gets through
    url_hook, received, _ = webhook
    cfg.webhook.url = url_hook
    assert deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=1, seconds=10)).sent == 0
    assert deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=2)).sent == 1
    assert len(received) == 1 and ("webhook", "sent") in _statuses(url)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("code", [302, 500])
def test_a_webhook_redirect_or_error_is_a_failure_not_followed(tmp_path, webhook, code):
    url_hook, received, status = webhook
    status.update(code=code, location=url_hook + "/elsewhere" if code == 302 else None)
    url = _db(tmp_path)
    _raise(url)
    with session_scope(url) as s:
        from clm_lib.db.models import Alert

        alert = view(s.scalars(select(Alert)).one())
    cfg = AlertsConfig.model_validate({"webhook": {"enabled": True, "url": url_hook}})
    with pytest.raises(Exception, match=f"HTTP {code}"):
        AlertWebhookNotifier(cfg.webhook, alert).notify({})
    assert len(received) == 1  # the redirect target was never asked


@pytest.mark.timeout(60)
def test_apprise_reaches_its_service_and_a_dead_one_is_a_failure(tmp_path, webhook, monkeypatch):
    url_hook, received, _ = webhook
    port = url_hook.split(":")[2].split("/")[0]
    conn = {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{port}/hook"}}}
    monkeypatch.setenv("AIRFLOW_CONN_APPRISE_ALERTS", json.dumps(conn))
    dead = {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{_free_port()}/hook"}}}
    monkeypatch.setenv("AIRFLOW_CONN_APPRISE_DEAD", json.dumps(dead))
    url = _db(tmp_path)
    _raise(url)
    cfg = AlertsConfig.model_validate({"apprise": {"enabled": True, "conn_id": "apprise_alerts"}})
    assert deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=1)).sent == 1
    [hit] = received
    assert "gate refused v7" in hit["body"]["title"] and "{{ secrets }}" in hit["body"]["message"]

    _raise(url, cause="gate_refused:m/8")
    cfg = AlertsConfig.model_validate({"apprise": {"enabled": True, "conn_id": "apprise_dead"}})
    report = deliver_pending(url, cfg, senders(cfg), now=T0 + timedelta(minutes=2))
    assert (report.sent, report.failed) == (0, 1) and len(received) == 1
    assert ("apprise", "failed") in _statuses(url)
