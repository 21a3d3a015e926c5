"""The Performance & drift page as the FAB provider serves it under /pluginsv2, for a signed-in viewer, on the seeded
database of the reporting tests (versions 1, 2 and 10; serving minutes of v2 and v10; two drift checks)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

import clm_lib.reporting.performance_page as performance_page
from tests.clm_lib.reporting.test_performance import NOW
from tests.clm_lib.reporting.test_performance import filled as filled

PAGE = "/clm/performance"


@pytest.fixture
def viewer(client, tokens, filled, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", filled.database_url)
    # The seeded minutes and checks sit at a fixed time: the page is built as of then.
    monkeypatch.setattr(performance_page, "datetime", _FixedNow)
    client.set_cookie("_token", tokens["vic"], domain="localhost")
    return client


class _FixedNow(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW.astimezone(tz or UTC)


def test_anonymous_and_unprivileged_are_refused(client, tokens):
    assert client.get(PAGE).status_code == 302
    client.set_cookie("_token", tokens["pat"], domain="localhost")
    assert client.get(PAGE).status_code == 403


def test_page_shows_heatmap_serving_and_drift_charts(viewer):
    response = viewer.get(PAGE + "?window=24h")
    assert response.status_code == 200
    html = response.text
    assert re.search(r'<a href="/pluginsv2/clm/performance" class="active" aria-current="page">Performance</a>', html)
    heat = html[html.index('id="heatmap"') : html.index("</svg>", html.index('id="heatmap"'))]
    assert heat.count("<rect ") == 6 and ">60.0</text>" in heat and "v10 · code: 60.0" in heat
    serving = html[html.index('id="serving"') : html.index('id="drift"')]
    for key in ("requests_per_min", "error_rate", "p50_ms", "p95_ms", "feedback_mean"):
        assert f'id="serving-{key}"' in serving
    totals = serving[serving.index('id="serving-totals"') :]
    assert "<strong>v2</strong>" in totals and "3.53 %" in totals  # 3 errors in 85 requests
    drift = html[html.index('id="drift"') :]
    assert 'href="/pluginsv2/clm/drift#detector-embedding_mmd"' in drift
    assert drift.count('<path class="pt pt-drift"') == 1 and '<polyline class="thr"' in drift
    assert "/clm/api/v1/performance/matrix" in html


def test_version_filter_and_window_selector(viewer):
    html = viewer.get(PAGE + "?window=1h&version=10").text
    assert "<option selected>1h</option>" in html and '<option value="10" selected>v10</option>' in html
    totals = html[html.index('id="serving-totals"') :]
    assert "<strong>v10</strong>" in totals and "<strong>v2</strong>" not in totals


def test_bad_filter_is_a_422_page_naming_it_with_escaped_input(viewer):
    response = viewer.get(PAGE + "?version=<script>alert(1)</script>")
    assert response.status_code == 422
    assert "Filter not applied:</strong> version:" in response.text and "<script>alert" not in response.text
    assert viewer.get(PAGE + "?window=1y").status_code == 422


def test_a_missing_database_says_which_store_and_since_when(client, tokens, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")
    client.set_cookie("_token", tokens["vic"], domain="localhost")
    response = client.get(PAGE)
    assert response.status_code == 503
    assert "clm&#39;s database cannot be read" in response.text and "(since 20" in response.text


def test_drift_page_links_here(viewer):
    html = viewer.get("/clm/drift").text
    assert 'href="performance#drift"' in html
