"""The Alerts screen and the Overview's Acknowledge button, as the FAB provider serves them under /pluginsv2."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

PAGE = "/clm/alerts"
SAME_ORIGIN = {"Origin": "http://localhost"}
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


@pytest.fixture
def alerts_db(tmp_path, monkeypatch) -> dict:
    from clm_lib.alerts import raise_alert
    from clm_lib.db import session_scope, upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    with session_scope(url) as s:
        hostile = raise_alert(s, kind="dag_failed", cause="dag_failed:clm_ingest", severity="critical",
                              message="<script>alert(1)</script> {{ 7*7 }}", now=T0,
                              links=[{"label": "DAG run", "href": "/dags/clm_ingest"}])  # fmt: skip
        gate = raise_alert(s, kind="gate_refused", cause="gate_refused:m/4", severity="warning",
                           message="gate refused v4", now=T0 + timedelta(minutes=1))  # fmt: skip
        s.flush()
        return {"url": url, "hostile": hostile.id, "gate": gate.id}


def _as(client, tokens, name):
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client


def _token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def test_a_viewer_sees_alerts_escaped_with_filters_but_no_button(client, tokens, alerts_db):
    html = _as(client, tokens, "vic").get(PAGE).text
    assert f'id="alert-{alerts_db["hostile"]}"' in html and f'id="alert-{alerts_db["gate"]}"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html
    assert 'href="/dags/clm_ingest"' in html and 'id="channel-webhook"' in html
    assert "Acknowledge" not in html and "needs permission to trigger <code>clm_alerts</code>" in html
    only = client.get(PAGE, query_string={"kind": "gate_refused"}).text
    assert f'id="alert-{alerts_db["gate"]}"' in only and f'id="alert-{alerts_db["hostile"]}"' not in only
    bad = client.get(PAGE, query_string={"severity": "<b>loud</b>"})
    assert bad.status_code == 422 and "Unknown severity" in bad.text and "<b>loud</b>" not in bad.text


def test_an_operator_acknowledges_from_the_overview_and_resolves_on_the_alerts_screen(client, tokens, alerts_db):
    from clm_lib.db import session_scope
    from clm_lib.db.models import Alert, AuditEntry

    uma = _as(client, tokens, "uma")
    overview = uma.get("/clm/").text
    assert f'action="/pluginsv2/clm/alerts/{alerts_db["gate"]}/ack"' in overview
    response = uma.post(f"/clm/alerts/{alerts_db['gate']}/ack", headers=SAME_ORIGIN,
                        data={"clm_csrf": _token(overview), "back": "overview"})  # fmt: skip
    assert response.status_code == 303 and response.headers["Location"].endswith("/pluginsv2/clm/")
    assert f'id="open-alert-{alerts_db["gate"]}"' not in uma.get("/clm/").text

    page = uma.get(PAGE, query_string={"status": "all"}).text
    response = uma.post(f"/clm/alerts/{alerts_db['hostile']}/resolve", headers=SAME_ORIGIN,
                        data={"clm_csrf": _token(page), "reason": "disk freed"})  # fmt: skip
    assert response.status_code == 303 and "done=resolved" in response.headers["Location"]
    with session_scope(alerts_db["url"]) as s:
        states = {a.id: (a.acknowledged_by, a.resolved_by) for a in s.scalars(select(Alert))}
        audited = [(e.action, e.actor) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert states[alerts_db["gate"]] == ("airflow:uma", None)
    assert states[alerts_db["hostile"]] == (None, "airflow:uma")
    assert audited == [("alert.acknowledged", "airflow:uma"), ("alert.resolved", "airflow:uma")]


def test_forged_or_unknown_acknowledgements_change_nothing(client, tokens, alerts_db):
    from clm_lib.db import session_scope
    from clm_lib.db.models import Alert

    uma = _as(client, tokens, "uma")
    token = _token(uma.get(PAGE).text)
    forged = uma.post(f"/clm/alerts/{alerts_db['gate']}/ack", headers={"Origin": "https://evil.example"},
                      data={"clm_csrf": token})  # fmt: skip
    assert forged.status_code == 403 and "Refused" in forged.text
    missing = uma.post("/clm/alerts/987654/ack", headers=SAME_ORIGIN, data={"clm_csrf": token})
    assert missing.status_code == 404 and "alert 987654 does not exist" in missing.text
    viewer = _as(client, tokens, "vic").post(f"/clm/alerts/{alerts_db['gate']}/ack", headers=SAME_ORIGIN,
                                              data={"clm_csrf": token})  # fmt: skip
    assert viewer.status_code == 403
    with session_scope(alerts_db["url"]) as s:
        assert all(a.acknowledged_at is None for a in s.scalars(select(Alert)))


def test_a_dead_database_says_which_store(client, tokens, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm:hunter2@127.0.0.1:9/clm")
    response = _as(client, tokens, "vic").get(PAGE)
    assert response.status_code == 503 and "clm&#39;s database cannot be read" in response.text
    assert "hunter2" not in response.text


@pytest.mark.parametrize(
    "query",
    [
        {"offset": "-1"},
        {"offset": "9" * 40},
        {"status": "\x00"},
        {"kind": "é" * 500},
        {"status": "all", "offset": "1"},
        {"done": "<b>", "alert": "x"},
    ],
)
def test_odd_query_strings_never_answer_5xx(client, tokens, alerts_db, query):
    response = _as(client, tokens, "vic").get(PAGE, query_string=query)
    assert response.status_code in (200, 422) and "<b>" not in response.text.split("</header>")[1]
