"""The Model registry screen, a version's lineage page and the comparison, as the FAB provider serves them under
/pluginsv2 with real users (FAB auth manager), a real clm database and a real MLflow registry. Hostile names are
escaped everywhere, the SVG included; every lineage box links to the screen that shows it."""

from __future__ import annotations

import re

import pytest

from tests.clm_lib.reporting.registry_history import HOSTILE, register_in_mlflow, seed_lineage

REGISTRY = "/clm/models"
ESCAPED = "&lt;img src=x onerror=alert(&#34;x&#34;)&gt;"


@pytest.fixture
def clm_env(airflow_fab, tmp_path, mlflow_uri, monkeypatch):
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_lineage(url)
    register_in_mlflow(mlflow_uri)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return url


def _as(client, tokens, name):
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client


def test_the_registry_lists_versions_aliases_and_their_history(client, tokens, clm_env):
    response = _as(client, tokens, "vic").get(REGISTRY)

    html = response.text
    assert response.status_code == 200
    assert re.findall(r'<tr id="v(\d+)">', html) == ["3", "2", "1"]
    row = html.split('<tr id="v2">')[1].split("</tr>")[0]
    assert '<span class="alias alias-champion">champion</span>' in row and "<code>tr-2</code>" in row
    assert 'href="/pluginsv2/clm/models/1">v1</a>' in row and "curated v1…v3" in row and "replay v4" in row
    assert '<span class="chip">billing 90.5</span>' in row and '<code title="cfg-b">cfg-b</code>' in row
    assert 'href="/pluginsv2/clm/models/compare?a=1&amp;b=2">vs v1</a>' in row
    assert 'href="/pluginsv2/clm/report/2">report</a>' in row
    assert "registered outside clm" in html.split('<tr id="v3">')[1].split("</tr>")[0]
    # challenger: MLflow says 3, the audit log says it was removed
    challenger = html.split('<tr id="alias-challenger"')[1].split("</tr>")[0]
    assert challenger.startswith(' class="disagrees"') and "moved outside clm" in challenger
    assert re.findall(r'<tr id="move-(\d+)">', html) == ["6", "5", "4", "3", "2", "1"]
    assert 'class="active" aria-current="page">Registry</a>' in html


def test_the_alias_history_filters_and_pages(client, tokens, clm_env):
    viewer = _as(client, tokens, "vic")

    champion = viewer.get(REGISTRY, query_string={"alias": "champion"}).text
    otto = viewer.get(REGISTRY, query_string={"actor": "OTTO"}).text
    bad = viewer.get(REGISTRY, query_string={"hoffset": "x"})

    assert re.findall(r'<tr id="move-(\d+)">', champion) == ["4", "2"]
    assert '<option value="champion" selected>' in champion
    assert re.findall(r'<tr id="move-(\d+)">', otto) == ["6", "5", "4"]
    assert bad.status_code == 422 and "<code>hoffset</code>" in bad.text


def test_a_versions_page_draws_its_lineage_with_links(client, tokens, clm_env):
    response = _as(client, tokens, "vic").get(f"{REGISTRY}/2")

    html = response.text
    assert response.status_code == 200
    svg = html.split('<svg class="lineage"')[1].split("</svg>")[0]
    assert HOSTILE not in html and ESCAPED in svg  # the landing file name is text, never markup
    assert 'href="/pluginsv2/clm/ingestion?batch=b-2#quarantine"' in svg
    assert 'href="/pluginsv2/clm/data?table=curated&amp;to=3#diff"' in svg
    assert 'href="/pluginsv2/clm/data?table=replay&amp;to=4#diff"' in svg
    assert 'href="/pluginsv2/clm/training?run=tr-2"' in svg and 'href="/pluginsv2/clm/models/1"' in svg
    assert 'href="/pluginsv2/clm/report/2"' in svg and 'href="/pluginsv2/clm/serving#history"' in svg
    assert 'class="node node-model st-passed current" id="node-model-2"' in svg
    assert svg.count('<path class="link') == 9
    assert "strategy.ewc.lambda" in html and "routers: 91.0 -&gt; 88.0" in html
    assert 'class="active" aria-current="page">Registry</a>' in html
    by_hand = _as(client, tokens, "vic").get(f"{REGISTRY}/3")
    assert by_hand.status_code == 200 and "registered in MLflow without" in by_hand.text
    missing = _as(client, tokens, "vic").get(f"{REGISTRY}/4242")
    assert missing.status_code == 404 and "no model version 4242" in missing.text
    assert _as(client, tokens, "vic").get(f"{REGISTRY}/abc").status_code == 404


def test_compare_shows_scores_and_the_config_diff(client, tokens, clm_env):
    response = _as(client, tokens, "vic").get(f"{REGISTRY}/compare", query_string={"a": "1", "b": "2"})

    html = response.text
    assert response.status_code == 200
    assert "<tr><td>routers</td><td class=\"num\">91.0</td><td class=\"num\">88.0</td>" in html
    changes = html.split('id="config-changes"')[1].split("</table>")[0]
    assert "<td>training.learning_rate</td><td>0.001</td><td>0.0005</td>" in changes
    assert "<td>training.ewc_lambda</td><td>(absent)</td><td>10.0</td>" in changes
    assert "hunter2" not in html
    assert _as(client, tokens, "vic").get(f"{REGISTRY}/compare").status_code == 200  # the two newest
    bad = _as(client, tokens, "vic").get(f"{REGISTRY}/compare", query_string={"a": "<b>x</b>", "b": "2"})
    assert bad.status_code == 422 and "<b>x</b>" not in bad.text
    unknown = _as(client, tokens, "vic").get(f"{REGISTRY}/compare", query_string={"a": "1", "b": "77"})
    assert unknown.status_code == 404 and "no model version 77" in unknown.text


def test_anonymous_goes_to_login_and_public_is_refused(client, tokens, clm_env):
    paths = (REGISTRY, f"{REGISTRY}/2", f"{REGISTRY}/compare")
    assert [client.get(p).status_code for p in paths] == [302] * 3
    assert [_as(client, tokens, "pat").get(p).status_code for p in paths] == [403] * 3


def test_a_fresh_install_shows_an_empty_registry(client, tokens, airflow_fab, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'none' / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")

    viewer = _as(client, tokens, "vic")
    page = viewer.get(REGISTRY)
    compare = viewer.get(f"{REGISTRY}/compare")

    assert page.status_code == 200 and "No model version yet" in page.text and "No alias has moved yet" in page.text
    assert compare.status_code == 200 and "fewer than two model versions" in compare.text
    assert not (tmp_path / "none").exists()
