"""The Integrations and Getting started pages, and the Overview's health, alerts and trend, as the FAB provider
serves them under /pluginsv2, for a signed-in viewer on a seeded installation."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.conftest import seed_history
from tests.clm_lib.reporting.test_overview_health import add_failures
from tests.plugins.helpers import signed_in

INTEGRATIONS = "/clm/integrations"
STARTED = "/clm/getting-started"
SECRET = "hunter2secret"


@pytest.fixture
def viewer(client, tokens):
    return signed_in(client, tokens, "vic")


@pytest.fixture
def seeded(tmp_path, monkeypatch) -> str:
    from clm_lib.db import session_scope, upgrade
    from clm_lib.db.models import IngestionBatch

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_history(url)
    add_failures(url)
    with session_scope(url) as s:
        s.add(IngestionBatch(id="b-x", source="landing/evil.jsonl", source_format="jsonl", file_sha256="f" * 64,
                             status="gave_up", error="<script>alert(1)</script>"))  # fmt: skip
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    return url


def test_anonymous_visitors_are_sent_to_login_and_the_public_refused(client, tokens):
    for page in (INTEGRATIONS, STARTED):
        response = client.get(page)
        assert response.status_code == 302 and "login" in response.headers["Location"]
    signed_in(client, tokens, "pat")
    assert client.get(INTEGRATIONS).status_code == 403 and client.get(STARTED).status_code == 403


def test_integrations_page_lists_every_system_with_where_it_is_configured(viewer, seeded):
    response = viewer.get(INTEGRATIONS)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    for name in ("MLflow", "clm&#39;s database", "Data lake", "Kafka", "Kubernetes", "GPU nodes"):
        assert f"<strong>{name}</strong>" in html
    assert "environment $CLM_DATABASE_URL" in html and "not configured" in html and "reachable" in html
    assert ">Integrations</a>" in html and ">Getting started</a>" in html  # in the tab bar


def test_a_password_in_the_database_url_is_never_shown(viewer, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"postgresql+psycopg2://clm:{SECRET}@127.0.0.1:9/clm")
    for page in (INTEGRATIONS, STARTED, "/clm/"):
        response = viewer.get(page)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, page
        assert SECRET not in html and "Traceback" not in html
    html = viewer.get(INTEGRATIONS).get_data(as_text=True)
    assert "unreachable" in html and "clm:***@127.0.0.1:9/clm" in html and "since" in html


def test_getting_started_on_a_fresh_install_starts_with_data(viewer, airflow_fab):
    import os

    html = viewer.get(STARTED).get_data(as_text=True)

    assert "Next: step 1, data arrives." in html and "make demo" in html
    assert f"cp my-data.jsonl {os.environ['CLM_HOME']}/landing/" in html and "model.base_path" in html
    assert html.count("badge-fail\">not yet") == 5 and "clm init" in html


def test_getting_started_on_a_seeded_install(viewer, seeded):
    html = viewer.get(STARTED).get_data(as_text=True)

    assert html.count('badge-pass">done') == 5  # no MLflow registry here, but a promotion is recorded
    assert "Every step has happened here." in html and "1 promotion(s)" in html
    assert 'href="/pluginsv2/clm/drift"' in html


def test_overview_shows_health_alerts_trend_and_links_escaped(viewer, seeded):
    html = viewer.get("/clm/").get_data(as_text=True)

    assert 'id="health-ingestion"' in html and 'state-failed">failing' in html
    assert 'id="alerts"' in html and "v3 rolled back automatically" in html
    assert 'href="/pluginsv2/clm/serving"' in html and 'href="/pluginsv2/clm/alerts"' in html  # the alert's, all
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>x</script>" not in html
    assert 'id="trend-1"' in html and "<polyline" in html
    assert 'id="screens"' in html and 'href="/pluginsv2/clm/integrations"' in html
