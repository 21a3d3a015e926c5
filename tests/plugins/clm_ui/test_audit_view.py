"""The "Reports & audit" screen, a version's printable report and the review queue, as the FAB provider serves them
under /pluginsv2 with real users and roles (FAB auth manager) and a real clm database. User-supplied text (reasons,
prompts, corrections) is escaped everywhere; a viewer sees the queue without buttons and cannot decide."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.clm_lib.reporting.audit_history import HOSTILE, add_corrections, seed_audit

AUDIT = "/clm/audit"
REVIEW = "/clm/review"
DECIDE = "/clm/review/decide"
SAME_ORIGIN = {"Origin": "http://localhost"}
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


@pytest.fixture
def clm_env(airflow_fab, tmp_path, mlflow_uri, monkeypatch):
    """clm's database holding the audit entries of ``audit_history`` and three corrections pending review."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    seed_audit(url)
    cfg = load_config()
    return cfg, add_corrections(url, ["Restart the router first", HOSTILE, "Call billing"])


def _as(client, tokens, name):
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client


def _form_token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def _pending(cfg) -> list[int]:
    from clm_lib.serving.review import pending

    return [i.id for i in pending(cfg)]


def test_the_audit_screen_lists_escapes_and_verifies(client, tokens, clm_env):
    response = _as(client, tokens, "vic").get(AUDIT)

    html = response.text
    assert response.status_code == 200
    assert HOSTILE not in html and ESCAPED in html  # the hostile reason is shown as text, never run
    assert re.findall(r'<tr id="entry-(\d+)"', html) == ["8", "7", "6", "5", "4", "3", "2", "1"]
    assert "<strong>Audit chain intact.</strong> 8 entries checked" in html
    assert 'href="/clm/api/v1/audit/export?format=csv"' in html and "format=json" in html
    assert 'href="/pluginsv2/clm/report/2">v2 report</a>' in html
    assert 'href="/pluginsv2/clm/review">review queue</a>' in html
    assert 'class="active" aria-current="page">Reports &amp; audit</a>' in html


def test_filters_and_pages_and_export_links_keep_the_filter(client, tokens, clm_env):
    viewer = _as(client, tokens, "vic")

    first = viewer.get(AUDIT, query_string={"action": "alias.", "limit": "2"}).text
    older = re.search(r'href="([^"]+)" rel="next">Older', first).group(1).replace("&amp;", "&")
    second = viewer.get(urlsplit(older).path.removeprefix("/pluginsv2"), query_string=parse_qs(urlsplit(older).query))

    assert re.findall(r'<tr id="entry-(\d+)"', first) == ["7", "4"]
    assert "1\N{EN DASH}2 of 4" in first
    assert re.findall(r'<tr id="entry-(\d+)"', second.text) == ["2", "1"]
    assert 'href="/clm/api/v1/audit/export?action=alias.&amp;format=csv"' in first
    window = viewer.get(AUDIT, query_string={"since": "2026-01-03", "until": "2026-01-05T12:00"}).text
    assert re.findall(r'<tr id="entry-(\d+)"', window) == ["4", "3"]


def test_a_bad_filter_is_said_not_an_error_page(client, tokens, clm_env):
    response = _as(client, tokens, "vic").get(AUDIT, query_string={"since": HOSTILE})

    assert response.status_code == 200
    assert "Filter not applied.</strong> since: not a date" in response.text
    assert HOSTILE not in response.text
    assert len(re.findall(r'<tr id="entry-', response.text)) == 8


def test_a_broken_chain_is_shown_with_the_entry(client, tokens, clm_env):
    from sqlalchemy import text

    from clm_lib.db import session_scope

    with session_scope(clm_env[0].database_url) as s:
        s.execute(text("DROP TRIGGER audit_log_no_delete"))
        s.execute(text("DELETE FROM audit_log WHERE id = 3"))

    html = _as(client, tokens, "vic").get(AUDIT).text

    assert "Audit chain broken: an entry was deleted." in html and "Entries before #4 (2) are intact." in html
    assert '<tr id="entry-4" class="broken">' in html


def test_a_database_that_cannot_be_read_is_named_with_since_when(client, tokens, airflow_fab, tmp_path, monkeypatch):
    missing = tmp_path / "gone" / "clm.db"
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{missing}")

    for path in (AUDIT, REVIEW, "/clm/report/1"):
        response = _as(client, tokens, "vic").get(path)
        assert response.status_code == 503
        assert "clm&#39;s database cannot be read" in response.text and "(since 20" in response.text
    assert not missing.exists()


def test_anonymous_goes_to_login_and_public_is_refused(client, tokens, clm_env):
    assert client.get(AUDIT).status_code == 302
    assert _as(client, tokens, "pat").get(AUDIT).status_code == 403
    assert _as(client, tokens, "pat").get(REVIEW).status_code == 403


def test_a_version_report_is_printable_and_escapes(client, tokens, clm_env, register_version):
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, GateDecision

    cfg, _ = clm_env
    version = register_version(cfg, {"routers": 91.0, "billing": 77.0})
    with session_scope(cfg.database_url) as s:
        s.add(GateDecision(model_name=cfg.registry.model_name, model_version=version, passed=False,
                           reasons=[f"billing fell: {HOSTILE}"]))  # fmt: skip
        evaluation = s.query(Evaluation).filter_by(model_version=version).one()
        evaluation.metrics = {"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 77.0}}}

    response = _as(client, tokens, "vic").get(f"/clm/report/{version}")

    html = response.text
    assert response.status_code == 200
    assert f"v{version}" in html and '<span class="alias alias-challenger">challenger</span>' in html
    assert '<tr><td>routers</td><td class="num">91.0</td>' in html  # exact match, the default, goes unnamed
    assert '<tr><td>billing</td><td class="num">77.0 <span class="muted">macro_f1</span></td>' in html
    assert '<span class="badge badge-fail">failed</span>' in html and HOSTILE not in html and ESCAPED in html
    assert f"<code>run-{version}</code>" in html
    assert 'class="active" aria-current="page">Reports &amp; audit</a>' in html
    missing = _as(client, tokens, "vic").get("/clm/report/4242")
    assert missing.status_code == 404 and "no model version 4242" in missing.text


def test_a_viewer_sees_the_queue_without_buttons(client, tokens, clm_env):
    html = _as(client, tokens, "vic").get(REVIEW).text

    queue = html.split('id="queue"')[1].split("</table>")[0]
    assert re.findall(r'<td class="num">(\d+)</td>', queue) == ["1", "2", "3"]
    assert HOSTILE not in html and ESCAPED in html
    assert "<form" not in html and "Accept ticked" not in html
    assert "needs permission to trigger <code>clm_ingest</code>" in html


def test_a_post_from_a_viewer_is_refused_and_changes_nothing(client, tokens, clm_env):
    cfg, ids = clm_env

    response = _as(client, tokens, "vic").post(DECIDE, data={"decision": "reject", "ids": ids, "reason": "x"},
                                               headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 403
    assert _pending(cfg) == ids


def test_an_operator_accepts_with_the_form_and_is_audited(client, tokens, clm_env):
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    cfg, ids = clm_env
    otto = _as(client, tokens, "otto")
    page = otto.get(REVIEW).text
    assert f'<form method="post" action="/pluginsv2{DECIDE}"' in page

    response = otto.post(DECIDE, data={"clm_csrf": _form_token(page), "decision": "accept", "ids": [str(ids[0])],
                                       "reason": "matches the handbook"}, headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert _pending(cfg) == ids[1:]
    with session_scope(cfg.database_url) as s:
        entry = s.query(AuditEntry).filter(AuditEntry.action == "feedback.accept").one()
        assert (entry.actor, entry.target, entry.reason) == ("airflow:otto", f"serving_feedback:{ids[0]}",
                                                             "matches the handbook")  # fmt: skip
    after = otto.get(target.path.removeprefix("/pluginsv2"), query_string=parse_qs(target.query)).text
    assert "1 correction accepted." in after and "matches the handbook" in after


@pytest.mark.parametrize(
    ("data", "says", "status"),
    [
        ({"decision": "reject", "reason": ""}, "Say why you reject them", 400),
        ({"decision": "accept", "ids": []}, "Tick at least one correction", 400),
        ({"decision": "accept", "ids": ["1 OR 1=1"]}, "not feedback ids", 400),
        ({"decision": "erase"}, "Choose accept or reject", 400),
        ({"decision": "accept", "ids": ["999"]}, "999: no such feedback", 409),
        ({"decision": "accept", "clm_csrf": ""}, "no valid security token", 403),
    ],
)
def test_refusals_say_why_and_decide_nothing(client, tokens, clm_env, data, says, status):
    cfg, ids = clm_env
    otto = _as(client, tokens, "otto")
    form = {"clm_csrf": _form_token(otto.get(REVIEW).text), "ids": [str(ids[1])], "reason": HOSTILE} | data

    response = otto.post(DECIDE, data=form, headers=SAME_ORIGIN)

    assert response.status_code == status
    assert "Nothing decided.</strong>" in response.text and says in response.text
    assert HOSTILE not in response.text  # the reason kept in the form is escaped too
    assert _pending(cfg) == ids


def test_a_cross_site_post_is_refused(client, tokens, clm_env):
    cfg, ids = clm_env
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(REVIEW).text)

    response = otto.post(DECIDE, data={"clm_csrf": token, "decision": "accept", "ids": [str(ids[0])]},
                         headers={"Origin": "https://evil.example"})  # fmt: skip

    assert response.status_code == 403 and "came from another site" in response.text
    assert _pending(cfg) == ids


def test_every_screen_is_one_click_away_from_any_clm_page(client, tokens, clm_env):
    from clm_ui import SCREENS

    html = _as(client, tokens, "vic").get(REVIEW).text
    tabs = html.split('<nav class="tabs"')[1].split("</nav>")[0]

    assert re.findall(r'href="([^"]+)"', tabs) == [f"/pluginsv2/clm{path}" for path, *_ in SCREENS]
    assert 'aria-current="page">Review queue</a>' in tabs
