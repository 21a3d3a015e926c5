"""The Data ingestion and Data versions pages as the FAB provider serves them under /pluginsv2, for a signed-in
viewer, on a real lake made by ingesting small generated files (one holding a hostile record)."""

from __future__ import annotations

import re

import pytest

from tests.clm_lib.reporting.data_lake import build_lake
from tests.plugins.helpers import signed_in

INGESTION = "/clm/ingestion"
VERSIONS = "/clm/data"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_lake(tmp_path_factory.mktemp("ui-data") / "home")


@pytest.fixture
def viewer(client, tokens, lake, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", lake.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", lake.cfg.lake_uri)
    return signed_in(client, tokens, "vic")


def test_anonymous_visitors_are_sent_to_login(client):
    for page in (INGESTION, VERSIONS):
        response = client.get(page)
        assert response.status_code == 302 and "login" in response.headers["Location"]


def test_a_user_without_read_access_is_refused(client, tokens):
    signed_in(client, tokens, "pat")
    assert client.get(INGESTION).status_code == 403


def test_ingestion_page_shows_batches_counts_and_quarantine(viewer, lake):
    response = viewer.get(INGESTION)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert lake.files.batch_id[:8] in html and lake.feedback.batch_id[:8] in html
    assert re.search(r'id="reconciliation".*?reconciles.*?reconciles.*?reconciles', html, re.S)
    assert "<svg" in html and "rows per hour" in html and "bar-curated" in html  # the chart, server-side
    for reason in ("malformed_json", "unknown_task", "prompt_too_long", "empty_response", "pending_review"):
        assert reason in html
    assert 'href="/pluginsv2/clm/review"' in html  # the review queue's correction links to its screen
    assert ">Ingestion</a>" in html and ">Versions</a>" in html  # in the tab bar


def test_a_hostile_record_is_escaped_and_its_invisible_characters_shown(viewer):
    html = viewer.get(INGESTION, query_string={"reason": "unknown_task"}).get_data(as_text=True)

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\u202e" not in html and "\\u202egnp.exe\\u0000" in html
    assert "1 record matching" in html


def test_long_records_are_cut_on_screen(viewer):
    html = viewer.get(INGESTION, query_string={"reason": "prompt_too_long"}).get_data(as_text=True)

    assert "y" * 3000 not in html and "y" * 160 + "…" in html


def test_filters_page_the_quarantine_and_bad_ones_are_named(viewer, lake):
    html = viewer.get(INGESTION, query_string={"batch": lake.files.batch_id}).get_data(as_text=True)
    assert "4 records matching" in html

    response = viewer.get(INGESTION, query_string={"source": "pigeon"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<code>source</code>" in html and "pigeon" in html
    assert "5 records matching" in html  # everything, instead


def test_a_store_that_is_down_is_named_with_since_when(viewer, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm@127.0.0.1:9/clm")

    response = viewer.get(INGESTION)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "clm&#39;s database cannot be read</strong> since" in html and "Traceback" not in html
    assert "5 records matching" in html  # the lake still answers


def test_data_versions_page_shows_history_runs_and_the_latest_diff(viewer, lake):
    response = viewer.get(VERSIONS)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert 'id="history-table"' in html and "<strong>v1</strong>" in html and "<strong>v0</strong>" in html
    assert lake.feedback.batch_id[:8] in html
    assert "v0 → v1:</strong>" in html and "+2</span> added" in html
    assert "not written yet" in html  # eval


def test_data_versions_unknown_table_or_version_is_a_404_naming_it(viewer):
    response = viewer.get(VERSIONS, query_string={"table": "<b>secrets</b>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and "&#39;&lt;b&gt;secrets&lt;/b&gt;&#39;" in html

    response = viewer.get(VERSIONS, query_string={"table": "curated", "to": "7"})
    assert response.status_code == 404 and "no version 7" in response.get_data(as_text=True)
    assert viewer.get(VERSIONS, query_string={"from": "x"}).status_code == 422


SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def own_lake(tmp_path, monkeypatch):
    """A lake of its own: a restore changes it."""
    built = build_lake(tmp_path / "home")
    monkeypatch.setenv("CLM_DATABASE_URL", built.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", built.cfg.lake_uri)
    return built


def _token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def test_an_operator_restores_a_version_after_seeing_what_it_changes(client, tokens, own_lake):
    from sqlalchemy import select

    from clm_lib.data import lake as tables
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    uma = signed_in(client, tokens, "uma")
    assert 'class="restore-link"' in uma.get(VERSIONS).text
    confirm = uma.get(VERSIONS, query_string={"restore": "0", "from": "1", "to": "0"}).text
    assert 'id="restore-form"' in confirm and "v1 → v0:</strong>" in confirm and "\u22122</span> removed" in confirm
    form = {"clm_csrf": _token(confirm), "table": "curated", "version": "0", "reason": "<b>bad</b> feedback"}
    response = uma.post(f"{VERSIONS}/restore", headers=SAME_ORIGIN, data=form)
    assert response.status_code == 303 and "restored=0" in response.headers["Location"]
    done = uma.get(response.headers["Location"].split("/pluginsv2", 1)[-1]).text
    assert "v2 holds what v0 held" in done
    assert tables.read_table(own_lake.cfg, "curated").num_rows == tables.read_table(own_lake.cfg, "curated", 0).num_rows
    with session_scope(own_lake.cfg.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "data.restored")).one()
    assert (entry.actor, entry.reason, entry.to_value) == ("airflow:uma", "<b>bad</b> feedback", "0")


def test_restores_that_are_forged_unknown_unexplained_or_by_a_viewer_change_nothing(client, tokens, own_lake):
    from clm_lib.data import lake as tables

    uma = signed_in(client, tokens, "uma")
    token = _token(uma.get(VERSIONS, query_string={"restore": "0"}).text)
    form = {"clm_csrf": token, "table": "curated", "version": "0", "reason": "why"}
    forged = uma.post(f"{VERSIONS}/restore", headers={"Origin": "https://evil.example"}, data=form)
    assert forged.status_code == 403 and "Refused" in forged.text
    unknown = uma.post(f"{VERSIONS}/restore", headers=SAME_ORIGIN, data={**form, "version": "9"})
    assert unknown.status_code == 404 and "no version 9" in unknown.text
    table = uma.post(f"{VERSIONS}/restore", headers=SAME_ORIGIN, data={**form, "table": "<i>x</i>"})
    assert table.status_code == 404 and "&lt;i&gt;x&lt;/i&gt;" in table.text and "<i>x</i>" not in table.text
    unexplained = uma.post(f"{VERSIONS}/restore", headers=SAME_ORIGIN, data={**form, "reason": "  "})
    assert unexplained.status_code == 400 and "needs a reason" in unexplained.text
    vic = signed_in(client, tokens, "vic")
    page = vic.get(VERSIONS, query_string={"restore": "0"}).text
    assert 'id="restore-form"' not in page and 'class="restore-link"' not in page
    assert vic.post(f"{VERSIONS}/restore", headers=SAME_ORIGIN, data=form).status_code == 403
    assert tables.table_version(own_lake.cfg, "curated") == 1
