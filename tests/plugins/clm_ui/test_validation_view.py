"""The Validation screen as the FAB provider serves it under /pluginsv2, for a signed-in viewer, on GX verdicts
stored by ingesting small generated files (one whose failing value is a script tag)."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.validation_lake import build_validation_lake
from tests.plugins.helpers import signed_in

PAGE = "/clm/validation"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_validation_lake(tmp_path_factory.mktemp("ui-validation") / "home")


@pytest.fixture
def viewer(client, tokens, lake, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", lake.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", lake.cfg.lake_uri)
    return signed_in(client, tokens, "vic")


def test_anonymous_visitors_are_sent_to_login(client, lake):
    for page in (PAGE, f"{PAGE}/{lake.hostile.batch_id}"):
        response = client.get(page)
        assert response.status_code == 302 and "login" in response.headers["Location"]


def test_a_user_without_read_access_is_refused(client, tokens, lake):
    signed_in(client, tokens, "pat")
    assert client.get(PAGE).status_code == 403
    assert client.get(f"{PAGE}/{lake.hostile.batch_id}").status_code == 403


def test_the_list_shows_each_batch_its_outcome_and_failure_counts(viewer, lake):
    response = viewer.get(PAGE)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    for result in (lake.hostile, lake.lake.files, lake.lake.feedback):
        assert f'href="/pluginsv2/clm/validation/{result.batch_id}"' in html
    assert html.count(">failed</span>") == 2 and html.count(">passed</span>") == 1
    assert 'id="expectation-table"' in html and "<code>unknown_task</code>" in html
    assert ">Validation</a>" in html  # in the tab bar

    failed = viewer.get(PAGE, query_string={"outcome": "success"}).get_data(as_text=True)
    assert lake.lake.feedback.batch_id in failed and lake.hostile.batch_id not in failed


def test_a_batch_page_escapes_a_hostile_failing_value(viewer, lake):
    response = viewer.get(f"{PAGE}/{lake.hostile.batch_id}")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\u202egnp.exe\\u0000 and more" in html
    assert "\u202e" not in html
    assert f"/pluginsv2/clm/ingestion?batch={lake.hostile.batch_id}#quarantine" in html


def test_a_batch_page_shows_each_expectation_and_its_failing_values(viewer, lake):
    html = viewer.get(f"{PAGE}/{lake.lake.files.batch_id}").get_data(as_text=True)

    assert html.count('<span class="good">passed</span>') == 6 and html.count('<span class="bad">failed</span>') == 5
    assert '<span class="rec failing-value">spaceships</span>' in html
    assert "long values are cut at 200 characters" in html  # the 3000-character prompt
    assert "max_value = 2000" in html


def test_the_ingestion_screen_links_batches_to_their_validation(viewer, lake):
    html = viewer.get("/clm/ingestion").get_data(as_text=True)
    assert f'href="/pluginsv2/clm/validation/{lake.lake.files.batch_id}"' in html


def test_unknown_batches_and_bad_filters_are_named(viewer):
    missing = viewer.get(f"{PAGE}/nosuchbatch")
    assert missing.status_code == 404 and "nosuchbatch" in missing.get_data(as_text=True)
    hostile = viewer.get(f"{PAGE}/<img src=x onerror=alert(1)>")
    body = hostile.get_data(as_text=True)
    assert hostile.status_code == 404 and "onerror=alert(1)>" not in body and "&lt;img src=x onerror" in body
    bad = viewer.get(PAGE, query_string={"since": "<b>yesterday</b>"})
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "<code>since</code>" in body and "<b>yesterday" not in body


def test_a_database_that_cannot_be_read_is_named_with_since_when(viewer, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm@127.0.0.1:9/clm")
    html = viewer.get(PAGE).get_data(as_text=True)
    assert "clm&#39;s database cannot be read</strong> since" in html


CSP = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'"


def test_a_batch_page_links_to_its_data_docs_served_without_scripts(viewer, lake):
    batch = lake.hostile.batch_id
    html = viewer.get(f"{PAGE}/{batch}").get_data(as_text=True)
    assert f'<a href="/pluginsv2/clm/validation/{batch}/data-docs">Great Expectations Data Docs</a>' in html

    response = viewer.get(f"{PAGE}/{batch}/data-docs")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Expectation Validation Result" in page and "public CDNs" in page
    assert "<script" not in page and "https://" not in page.replace("https://greatexpectations", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_data_docs_need_a_login_and_read_access(client, tokens, lake):
    page = f"{PAGE}/{lake.hostile.batch_id}/data-docs"
    response = client.get(page)
    assert response.status_code == 302 and "login" in response.headers["Location"]
    signed_in(client, tokens, "pat")
    assert client.get(page).status_code == 403


@pytest.mark.parametrize("batch_id", ["..%2F..%2Fetc", "..", ".hidden", "%2e%2e", "..%5c..%5cetc", "a%00b"])
def test_data_docs_refuse_an_id_that_is_not_a_plain_id(viewer, lake, batch_id):
    before = sorted(p.name for p in lake.cfg.home.rglob("*"))
    response = viewer.get(f"{PAGE}/{batch_id}/data-docs")
    assert response.status_code in (400, 404)
    assert "root:" not in response.get_data(as_text=True)
    assert sorted(p.name for p in lake.cfg.home.rglob("*")) == before


def test_data_docs_of_an_unknown_batch_are_a_404_naming_it(viewer):
    response = viewer.get(f"{PAGE}/nosuchbatch/data-docs")
    assert response.status_code == 404 and "nosuchbatch" in response.get_data(as_text=True)
