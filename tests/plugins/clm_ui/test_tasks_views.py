"""The Multi-task screen as the FAB provider serves it under /pluginsv2, with real users and roles over a seeded clm
database and MLflow registry: the list, a task with its removal impact, the addition preview, and the two confirmed
actions (remove: a loopback server stands in for Airflow's REST API; add: a configuration revision), audited."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from tests.clm_lib.reporting.tasks_history import HOSTILE_TASK, quarantine_solar, seeded_config

TASKS = "/clm/tasks"
REMOVE = "/clm/tasks/billing/remove"
ADD = "/clm/tasks/add/confirm"
SAME_ORIGIN = {"Origin": "http://localhost"}
REASON = "<script>alert('r')</script> billing leaves"


@pytest.fixture
def seeded(airflow_fab, tmp_path, monkeypatch, _mlflow_template):
    return seeded_config(tmp_path, monkeypatch, _mlflow_template)


def _as(client, tokens, name):
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client


def _form_token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def _audit(cfg) -> list[AuditEntry]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _live_tasks(cfg) -> list[str]:
    from clm_lib.reporting.stores import reading
    from clm_lib.reporting.tasks import configured_tasks

    with reading(cfg.database_url) as s:
        return configured_tasks(s, cfg)


def test_a_viewer_sees_every_task_escaped_and_no_controls(client, tokens, seeded):
    response = _as(client, tokens, "vic").get(TASKS)

    html = response.text
    assert response.status_code == 200
    table = html.split('id="tasks"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<code>([a-z_]+)</code></a>", table) == list(seeded.data.tasks)
    assert "&lt;b&gt;x" in table and HOSTILE_TASK not in table
    assert "own <code>task_billing</code>" in table and "16 KiB" in table and "77.5" in table and "-2.5" in table
    assert 'id="router-accuracy"' in html and ">Multi-task</a>" in html
    assert "clm_csrf" not in html and "Remove…" not in html and 'id="new-task"' not in html
    detail = _as(client, tokens, "vic").get(f"{TASKS}/billing").text
    assert 'id="routed"' in detail and "estimated" in detail and 'id="remove-form"' not in detail
    assert "clm_csrf" not in detail


def test_an_operator_sees_the_impact_then_removes_and_it_is_audited(client, tokens, seeded, fake_airflow):
    otto = _as(client, tokens, "otto")
    assert "Remove…" in otto.get(TASKS).text
    page = otto.get(f"{TASKS}/billing").text
    assert 'id="remove-form"' in page and 'id="remaining-scores"' in page and "77.5" in page
    assert "71.4%" in page and "100.0%" in page  # replay shares now and after

    response = otto.post(REMOVE, data={"clm_csrf": _form_token(page), "reason": REASON}, headers=SAME_ORIGIN)

    assert response.status_code == 303
    [seen] = fake_airflow.seen
    assert seen["auth"] == f"Bearer {tokens['otto']}"
    assert seen["body"]["conf"] == {"remove_task": "billing", "reason": REASON}
    assert [(e.action, e.actor, e.reason) for e in _audit(seeded)] == [
        ("task.remove_requested", "airflow:otto", REASON), ("config.changed", "airflow:otto", REASON)]  # fmt: skip
    location = urlsplit(response.headers["Location"])
    assert location.path == "/pluginsv2/clm/tasks/billing"
    shown = otto.get(f"{TASKS}/billing", query_string=location.query).text
    assert 'id="remove-result"' in shown and "manual__2026-12-07T10:00:00+00:00" in shown
    assert "billing" not in _live_tasks(seeded)


def test_an_operator_previews_and_adds_a_task(client, tokens, seeded, fake_airflow):
    quarantine_solar(seeded, 4)
    otto = _as(client, tokens, "otto")
    preview = otto.get(f"{TASKS}/add", query_string={"name": "solar"})
    assert preview.status_code == 200 and 'id="add-form"' in preview.text
    assert re.search(r'id="quarantined">4 records \(unknown_task: 4\)', preview.text)

    response = otto.post(ADD, data={"clm_csrf": _form_token(preview.text), "name": "solar", "reason": "new line"},
                         headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 303 and "added=solar" in response.headers["Location"]
    assert _live_tasks(seeded)[-1] == "solar"
    [entry] = _audit(seeded)
    assert (entry.action, entry.actor, entry.reason) == ("config.changed", "airflow:otto", "new line")
    assert fake_airflow.seen == []


def test_a_viewer_cannot_post_and_nothing_changes(client, tokens, seeded, fake_airflow):
    viewer = _as(client, tokens, "vic")
    assert viewer.post(REMOVE, data={"reason": "x"}, headers=SAME_ORIGIN).status_code == 403
    assert viewer.post(ADD, data={"name": "solar", "reason": "x"}, headers=SAME_ORIGIN).status_code == 403
    assert fake_airflow.seen == [] and _audit(seeded) == [] and "billing" in _live_tasks(seeded)


@pytest.mark.parametrize("case", ["no_token", "other_site"])
def test_forged_posts_are_refused(client, tokens, seeded, fake_airflow, case):
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(f"{TASKS}/billing").text)
    data = {"reason": "forged"} | ({} if case == "no_token" else {"clm_csrf": token})
    headers = {"Origin": "https://evil.example"} if case == "other_site" else SAME_ORIGIN

    response = otto.post(REMOVE, data=data, headers=headers)

    assert response.status_code == 403 and 'id="task-problem"' in response.text
    assert fake_airflow.seen == [] and _audit(seeded) == []


def test_refusals_say_why_and_change_nothing(client, tokens, seeded, fake_airflow):
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(f"{TASKS}/billing").text)
    empty = otto.post(REMOVE, data={"clm_csrf": token, "reason": " "}, headers=SAME_ORIGIN)
    assert empty.status_code == 400 and "Say why" in empty.text
    blocked = otto.post("/clm/tasks/thermostats/remove", data={"clm_csrf": token, "reason": "r"}, headers=SAME_ORIGIN)
    assert blocked.status_code == 409 and "no adapter for thermostats" in blocked.text
    unknown = otto.post("/clm/tasks/nope/remove", data={"clm_csrf": token, "reason": "r"}, headers=SAME_ORIGIN)
    assert unknown.status_code == 404
    bad = otto.get(f"{TASKS}/add", query_string={"name": "a b"})
    assert bad.status_code == 422 and "Field add" in bad.text
    assert fake_airflow.seen == [] and _audit(seeded) == []


def test_unknown_task_and_store_down(client, tokens, airflow_fab, seeded, tmp_path, monkeypatch):
    viewer = _as(client, tokens, "vic")
    missing = viewer.get(f"{TASKS}/<i>nope")
    assert missing.status_code == 404 and "&lt;i&gt;nope" in missing.text and "<i>nope" not in missing.text
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    for page in (TASKS, f"{TASKS}/billing", f"{TASKS}/add?name=solar"):
        response = viewer.get(page)
        assert response.status_code == 503 and "clm&#39;s database cannot be read" in response.text
    assert not (tmp_path / "none.db").exists()
