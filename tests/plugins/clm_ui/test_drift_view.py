"""The drift page as the FAB provider serves it under /pluginsv2, for a signed-in viewer."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

PAGE = "/clm/drift"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def viewer(client, tokens):
    client.set_cookie("_token", tokens["vic"], domain="localhost")
    return client


@pytest.fixture
def clm_db(tmp_path, monkeypatch) -> str:
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    return url


def _seed(url: str) -> None:
    """Two checks: task_mix fired and started tr-7 (v7); an hour later it fired again inside its cooldown,
    while text_stats had too few rows to judge."""
    from clm_lib.db import session_scope
    from clm_lib.db.models import DriftReport, TrainingRun

    def report(check, hours, detector, **kw):
        return DriftReport(check_id=check, detector=detector, created_at=T0 + timedelta(hours=hours),
                           reference_version=3, current_version=5, champion_version="6", **kw)  # fmt: skip

    with session_scope(url) as s:
        s.add(TrainingRun(id="tr-7", status="succeeded", model_version="7", base_model="b", config_hash="h",
                          airflow_dag_id="clm_continual_training", airflow_run_id="asset_triggered__x1"))  # fmt: skip
        s.flush()
        s.add_all(
            [
                report("check-one", 0, "task_mix", status="ok", drift=True, statistic=193.7, p_value=8.65e-43,
                       threshold=0.01, triggered=True, retrain_requested=True, training_run_id="tr-7",
                       explanation="the task mix moved: largest change routers 33% -> 79%"),
                report("check-one", 0, "volume", status="ok", drift=False, statistic=1234, threshold=2000),
                report("check-two", 1, "task_mix", status="ok", drift=True, statistic=80.0, p_value=3e-9,
                       threshold=0.01, suppressed_reason="fired within its 24 h cooldown (quiet until later)",
                       explanation="the task mix moved again"),
                report("check-two", 1, "text_stats", status="insufficient data", drift=None,
                       explanation="40 reference and 12 current rows; at least 100 per side are needed to judge"),
                report("check-two", 1, "volume", status="ok", drift=False, statistic=1500, threshold=2000),
            ]
        )  # fmt: skip


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(PAGE)

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/auth/login/"
    assert parse_qs(location.query)["next"] == ["http://localhost/pluginsv2/clm/drift"]


def test_user_without_permission_gets_403(client, tokens):
    client.set_cookie("_token", tokens["pat"], domain="localhost")

    response = client.get(PAGE)

    assert response.status_code == 403 and "read access to DAGs" in response.text


def test_fresh_install_explains_what_will_appear(viewer, airflow_fab):
    response = viewer.get(PAGE)

    assert response.status_code == 200
    html = response.text
    assert "Signed in as <strong>vic</strong>" in html
    assert "no clm database yet" in html and "clm init" in html
    assert "No alerts" in html and '<svg class="chart"' not in html
    assert 'id="detector-task_mix"' in html  # the configured detectors are listed with their policy
    assert "triggers retraining · 24 h cooldown" in html


def test_checks_are_plotted_with_their_numbers_and_links(viewer, clm_db):
    _seed(clm_db)

    html = viewer.get(PAGE).text

    assert "No retraining</div>" in html  # the latest check's decision
    assert "fired within its 24 h cooldown (quiet until later)" in html
    assert "text_stats · insufficient data" in html  # could not judge: said, never shown as "no drift"
    assert "v3 → v5" in html and "<dd>v6</dd>" in html  # Delta versions compared, champion
    mix = html[html.index('id="detector-task_mix"') : html.index('id="detector-perplexity"')]
    assert mix.count('<path class="pt pt-drift"') == 2 and mix.count('class="halo"') == 1  # one retrained
    # the second check's hover text
    assert "p = 3e-9 (\N{GREEK SMALL LETTER ALPHA} 0.01) · drift · ignored: cooldown" in mix
    assert re.search(r'<dd class="num">3e-9 <span class="muted">/ 0.01</span></dd>', mix)
    stats = html[html.index('id="detector-text_stats"') : html.index('id="detector-task_mix"')]
    assert '<path class="pt pt-na"' in stats and "1 insufficient/error" in stats
    volume = html[html.index('id="detector-volume"') :]
    assert ">≥ 2k</text>" in volume and "1.5k" in volume
    alerts = html[html.index('id="alerts"') :]
    assert alerts.count("<tr>") == 3  # header + the two checks where task_mix fired
    assert "task_mix · cooldown" in alerts and "retrain requested" in alerts
    assert "<code>tr-7</code>" in alerts and "<strong>v7</strong>" in alerts
    assert 'href="/dags/clm_continual_training/runs/asset_triggered__x1"' in alerts and 'target="_top"' in alerts


def test_pages_link_to_each_other(viewer):
    drift = viewer.get(PAGE).text
    overview = viewer.get("/clm/").text

    assert re.search(r'<a href="/pluginsv2/clm/drift" class="active" aria-current="page">Drift</a>', drift)
    assert re.search(r'<a href="/pluginsv2/clm/" class="active" aria-current="page">Overview</a>', overview)
    assert 'href="/pluginsv2/clm/drift"' in overview


def test_unexpected_failure_shows_no_traceback(viewer, monkeypatch):
    import clm_ui.views

    def boom(cfg):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(clm_ui.views, "build_drift", boom)

    response = viewer.get(PAGE)

    assert response.status_code == 500
    assert "The drift page could not be built" in response.text and "api-server log" in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text
