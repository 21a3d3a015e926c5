"""The ``clm_default`` connection decides which database every Airflow-facing part of clm reads: the screens, the
REST API and the deferred sensor's trigger, as the tasks do. The file and environment name database A, the
connection names database B; everything must read B.

The api-server reads connections from ``AIRFLOW_CONN_*`` variables and from Airflow's own connection table (it
marks itself a server process, ``_AIRFLOW_PROCESS_CONTEXT=server``, before it imports plugins); both are tested.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

API = "/clm/api"
SCREEN = "/pluginsv2/clm/drift"


@pytest.fixture(scope="module")
def app(airflow_fab):
    """Airflow's api-server app: clm's REST API at /clm/api and the FAB screens at /pluginsv2, as served."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


def _database(path) -> str:
    from clm_lib.db import upgrade

    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture
def two_databases(airflow_fab, tmp_path, monkeypatch):
    """A (named by the environment, empty) and B (a drift check that requests a retraining, a rollback)."""
    from clm_lib.config import load_config
    from clm_lib.db import session_scope
    from clm_lib.db.models import Deployment
    from clm_lib.drift.config import DriftConfig
    from clm_lib.drift.monitor import run_drift_check

    a, b = _database(tmp_path / "a.db"), _database(tmp_path / "b.db")
    monkeypatch.setenv("CLM_DATABASE_URL", a)
    cfg_b = load_config(environ={"CLM_HOME": str(tmp_path / "home"), "CLM_DATABASE_URL": b})
    settings = DriftConfig(volume={"min_new_rows": 10})  # the volume trigger alone requests a retraining
    decision = run_drift_check(cfg_b, reference=[], current=[], new_rows=20, settings=settings, detectors=[],
                               now=datetime.now(UTC))  # fmt: skip
    with session_scope(b) as s:
        s.add(Deployment(kind="rollback", model_name="m", version="7", strategy="alias", status="rolled_back",
                         actor="airflow:ada", reason="only in database B", details={}))  # fmt: skip
    return a, b, decision.check_id


def _connection(database_url: str) -> str:
    return json.dumps({"conn_type": "clm", "extra": {"database_url": database_url}})


def _trigger_event(since: datetime, timeout: float) -> dict:
    """The first event of the deferred sensor's trigger, run as the triggerer runs it."""
    from clm_lib.airflow.triggers.retrain import RetrainRequestTrigger

    async def first():
        async for event in RetrainRequestTrigger(since=since.isoformat(), poll_interval=0.05).run():
            return event

    return asyncio.run(asyncio.wait_for(first(), timeout)).payload


def _screen(app, tokens):
    """The drift page as the UI's iframe asks for it, with the JWT cookie of a viewer."""
    return app.get(SCREEN, headers={"Cookie": f"_token={tokens['vic']}"}, follow_redirects=False)


def _reads(app, tokens) -> tuple[list[str], str]:
    """(reasons of the deployments the REST API lists, the drift screen's HTML)."""
    deployments = app.get(f"{API}/deployments", headers={"Authorization": f"Bearer {tokens['vic']}"})
    assert deployments.status_code == 200, deployments.text
    screen = _screen(app, tokens)
    assert screen.status_code == 200, screen.text[-2000:]
    return [d["reason"] for d in deployments.json()["deployments"]], screen.text


def test_without_the_connection_everything_reads_the_environments_database(app, tokens, two_databases):
    _, _, check_id = two_databases

    reasons, screen = _reads(app, tokens)

    assert reasons == [] and check_id not in screen
    with pytest.raises(TimeoutError):  # nothing pending in A: the trigger keeps waiting
        _trigger_event(datetime.now(UTC) - timedelta(hours=1), timeout=1.0)


def test_a_screen_the_rest_api_and_the_trigger_read_the_connections_database(app, tokens, two_databases,
                                                                             monkeypatch):  # fmt: skip
    _, b, check_id = two_databases
    monkeypatch.setenv("AIRFLOW_CONN_CLM_DEFAULT", _connection(b))

    reasons, screen = _reads(app, tokens)
    event = _trigger_event(datetime.now(UTC) - timedelta(hours=1), timeout=30)

    assert reasons == ["only in database B"]
    assert f"<code>{check_id}</code>" in screen
    assert event["status"] == "requested" and event["request"]["check_id"] == check_id


def test_the_api_server_reads_a_connection_stored_in_airflows_database(app, tokens, two_databases, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    _, b, check_id = two_databases
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # what airflow/api_fastapi/main.py sets
    with create_session() as session:
        session.add(Connection(conn_id="clm_default", conn_type="clm", extra=json.dumps({"database_url": b})))
    try:
        reasons, screen = _reads(app, tokens)
        assert reasons == ["only in database B"] and f"<code>{check_id}</code>" in screen

        # Edited in the UI: the next request follows, no restart.
        c = _database(tmp_path / "c.db")
        _edit_extra(json.dumps({"database_url": c}))
        reasons, screen = _reads(app, tokens)
        assert reasons == [] and check_id not in screen

        _edit_extra('{"databse_url": "sqlite://"}')
        broken = app.get(f"{API}/deployments", headers={"Authorization": f"Bearer {tokens['vic']}"})
        assert broken.status_code == 500
        assert "Airflow connection 'clm_default': unknown extra key(s) databse_url" in broken.json()["detail"]
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "clm_default").delete()


def _edit_extra(extra: str) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "clm_default").one().extra = extra


def test_an_unreadable_connection_is_shown_on_the_screen_not_ignored(app, tokens, two_databases, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CLM_DEFAULT", '{"conn_type": "clm", "extra": ')
    screen = _screen(app, tokens)

    assert screen.status_code == 500
    assert "clm&#39;s configuration is invalid" in screen.text
    assert "Airflow connection &#39;clm_default&#39; in $AIRFLOW_CONN_CLM_DEFAULT cannot be parsed" in screen.text
