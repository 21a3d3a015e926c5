"""The Configuration screen as the FAB provider serves it under /pluginsv2, with real users and roles: forms
disabled for a Viewer, preview with the gate's impact, save with a reason (audited), conflicts, history, revert."""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, ConfigRevision
from tests.clm_lib.reporting.config_history import HOSTILE, seed_gate_history
from tests.plugins.helpers import signed_in

PAGE = "/clm/config"
SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def seeded(airflow_fab, tmp_path, monkeypatch):
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.delenv("CLM__DEPLOY__BAKE_SECONDS", raising=False)
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_gate_history(cfg.database_url)
    return cfg


def _token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def _preview(client, token: str, **fields):
    data = {"clm_csrf": token, **{f"f:{k}": v for k, v in fields.items()}}
    return client.post(f"{PAGE}/preview", data=data, headers=SAME_ORIGIN)


def _save(client, token: str, changes: dict, base: int, reason: str = "longer bake"):
    data = {"clm_csrf": token, "changes": json.dumps(changes), "base_revision": str(base), "reason": reason}
    return client.post(f"{PAGE}/save", data=data, headers=SAME_ORIGIN)


def _revisions(cfg) -> list[int]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(ConfigRevision.number).order_by(ConfigRevision.number)))


def test_a_viewer_reads_the_forms_disabled_and_cannot_post(client, tokens, seeded):
    viewer = signed_in(client, tokens, "vic")
    page = viewer.get(PAGE)
    html = page.text
    assert page.status_code == 200 and "revision 1" in html and "live" in html
    assert re.search(r'<input id="f-deploy.bake_seconds" name="f:deploy.bake_seconds" value="5.0"[^>]* disabled>', html)
    assert "clm_csrf" not in html and 'id="viewer-note"' in html and "Preview the change" not in html
    # Read-only fields say why; a secret is never shown, not even redacted.
    assert "server.airflow_port" in html and "and restart" in html.split("server.airflow_port", 1)[1][:800]
    assert ">Configuration</a>" in html  # the tab bar, from clm_ui.SCREENS
    refused = viewer.post(f"{PAGE}/preview", data={"f:deploy.bake_seconds": "30"}, headers=SAME_ORIGIN)
    assert refused.status_code == 403
    assert _revisions(seeded) == []


def test_an_operator_previews_the_gate_impact_then_saves_and_it_is_audited(client, tokens, seeded):
    op = signed_in(client, tokens, "otto")
    token = _token(op.get(PAGE).text)

    preview = _preview(
        op, token, **{"deploy.bake_seconds": "30", "gate.max_task_drop": "1", "gate.min_new_task_accuracy": "0.0"}
    )
    html = preview.text
    assert preview.status_code == 200, html[:2000]
    diff = html.split('id="preview-diff"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<code>([a-z_.]+)</code>", diff) == ["deploy.bake_seconds", "gate.max_task_drop"]
    assert "the gate would have refused version 2 with this budget" in html
    assert _revisions(seeded) == []  # a preview stores nothing
    changes = json.loads(htmllib.unescape(re.search(r'name="changes" value="([^"]*)"', html).group(1)))
    assert changes == {"deploy.bake_seconds": 30, "gate.max_task_drop": 1}

    saved = _save(op, token, changes, base=1, reason=HOSTILE)
    assert saved.status_code == 303 and saved.headers["Location"].endswith("/clm/config?saved=2")
    page = op.get(PAGE, query_string={"saved": "2"}).text
    assert 'id="config-saved"' in page and "revision 2" in page and 'value="30.0"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
    with session_scope(seeded.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "config.changed")).one()
    assert (entry.actor, entry.reason, entry.to_value) == ("airflow:otto", HOSTILE, "revision 2")

    # A second operator still on revision 1: refused, naming the newer revision; nothing stored.
    stale = _save(op, token, {"deploy.bake_seconds": 9}, base=1)
    assert stale.status_code == 409 and "revision 2 was saved since by airflow:otto" in htmllib.unescape(stale.text)
    assert _revisions(seeded) == [1, 2]


def test_an_invalid_value_is_refused_naming_the_field_and_the_rule(client, tokens, seeded):
    op = signed_in(client, tokens, "otto")
    token = _token(op.get(PAGE).text)
    bad = _preview(op, token, **{"deploy.canary_steps": "[10, 50]"})
    assert bad.status_code == 400
    assert "deploy.canary_steps" in bad.text and "the last canary step must be 100" in bad.text
    forged = _save(op, "not-a-token", {"gate.max_task_drop": 1}, base=1)
    assert forged.status_code == 403
    assert _revisions(seeded) == []


def test_history_diff_between_two_revisions_and_revert(client, tokens, seeded):
    op = signed_in(client, tokens, "otto")
    token = _token(op.get(PAGE).text)
    assert _save(op, token, {"deploy.bake_seconds": 30}, base=1).status_code == 303
    assert _save(op, token, {"gate.max_task_drop": 2}, base=2).status_code == 303

    history = op.get(f"{PAGE}/history", query_string={"a": "1", "b": "3"}).text
    diff = history.split('id="diff-table"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<code>([a-z_.]+)</code>", diff) == ["deploy.bake_seconds", "gate.max_task_drop"]
    assert re.findall(r'<tr id="rev-(\d+)"', history) == ["3", "2", "1"]
    assert 'name="to" value="1"' in history and 'name="to" value="3"' not in history  # no revert to the live one

    reverted = op.post(f"{PAGE}/revert", data={"clm_csrf": token, "to": "1", "base_revision": "3",
                                               "reason": "back to the file"}, headers=SAME_ORIGIN)  # fmt: skip
    assert reverted.status_code == 303
    page = op.get(PAGE).text
    assert "revision 4" in page and 'value="5.0"' in page
    missing = op.get(PAGE, query_string={"version": "99"})
    assert missing.status_code == 404 and "no configuration revision 99" in missing.text


def test_a_database_that_cannot_be_read_is_named(client, tokens, airflow_fab, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    page = signed_in(client, tokens, "vic").get(PAGE)
    assert page.status_code == 503 and "clm&#39;s database cannot be read" in page.text
