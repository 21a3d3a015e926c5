"""The overview page as the FAB provider serves it under /pluginsv2, for a signed-in viewer."""

import re
import socket
from datetime import UTC, datetime

import pytest

PAGE = "/clm/"


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


def test_fresh_install_explains_how_to_start(viewer, airflow_fab):
    import os

    html = viewer.get(PAGE).text

    landing = f"{os.environ['CLM_HOME']}/landing"
    assert f"No data ingested yet</strong> — drop files into <code>{landing}</code>" in html
    assert "No training runs yet" in html and "No evaluation yet" in html and "No changes recorded yet" in html
    assert "clm init" in html  # no database yet: the page says how to create it


def test_assets_are_local_and_served(viewer):
    html = viewer.get(PAGE).text

    assets = re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="([^"]+)"', html)
    assert assets and all(a.startswith("/pluginsv2/clm/static/") for a in assets), assets
    css = viewer.get("/clm/static/clm.css")
    assert css.status_code == 200 and css.mimetype == "text/css" and ".heat-10" in css.text
    assert viewer.get("/clm/static/icon.svg").status_code == 200


def test_history_is_rendered_with_numbers_right_aligned(viewer, clm_db):
    from clm_lib import audit
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, GateDecision, IngestionBatch, TrainingRun

    with session_scope(clm_db) as s:
        s.add(IngestionBatch(id="b-1", source="landing/a.jsonl", source_format="jsonl", file_sha256="a" * 64,
                             status="committed", rows_in=1234, rows_curated=1200, rows_quarantined=30, rows_duplicate=4,
                             task_counts={"routers": 1200}, quarantine_reasons={"prompt_too_short": 30}))  # fmt: skip
        s.add(TrainingRun(id="tr-1", status="succeeded", model_version="7", base_model="b", config_hash="h",
                          new_rows=1200, replay_rows=0, tasks=["routers", "billing"],
                          airflow_dag_id="clm_continual_training", airflow_run_id="manual__1"))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id="tr-1", model_version="7", tasks=["routers", "billing"],
                         matrix=[[92.5, None], [81.25, 95.0]], scores={"routers": 81.25, "billing": 95.0},
                         average_accuracy=88.125, backward_transfer=-11.25, created_at=datetime.now(UTC)))  # fmt: skip
        s.add(GateDecision(model_name="clm-assistant", model_version="7", champion_version="6", passed=False,
                           reasons=["routers: 92.5 -> 81.2 (-11.2; budget -5.0) REGRESSED"]))  # fmt: skip
        audit.record(s, action="alias.champion", target="clm-assistant@champion", actor="alice", from_value="5",
                     to_value="6", reason="rollback after latency breach")  # fmt: skip

    html = viewer.get(PAGE).text

    assert "No data ingested yet" not in html
    assert '<td class="num">1,234</td>' in html  # rows in, grouped and right-aligned
    assert re.search(r'<td class="num heat-9[^"]*" [^>]*>92\.5</td>', html)  # R[0][0] and its colour bucket
    assert re.search(r'<td class="num heat-8[^"]*" [^>]*>81\.2</td>', html)
    assert '<td class="num neg">-11.2</td>' in html  # BWT, and forgetting of routers
    assert 'badge badge-fail">failed</span>' in html and "REGRESSED" in html
    assert 'href="/dags/clm_continual_training/runs/manual__1"' in html and 'target="_top"' in html
    assert "rollback after latency breach" in html and "alice" in html
    assert "prompt_too_short" in html


def test_unreachable_mlflow_is_a_banner_not_an_error(viewer, clm_db, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")

    response = viewer.get(PAGE)

    assert response.status_code == 200
    assert "MLflow unreachable." in response.text


def test_invalid_config_is_explained_without_a_traceback(viewer, tmp_path, monkeypatch):
    bad = tmp_path / "clm.yaml"
    bad.write_text("data: {tasks: [a]}\ntraining: {max_steps: -1}\n")
    monkeypatch.setenv("CLM_CONFIG", str(bad))

    response = viewer.get(PAGE)

    assert response.status_code == 500
    assert "clm&#39;s configuration is invalid" in response.text and "training.max_steps" in response.text
    assert "Traceback" not in response.text


def test_unexpected_failure_shows_no_traceback(viewer, monkeypatch):
    import clm_ui.views

    def boom(cfg):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(clm_ui.views, "build_overview", boom)

    response = viewer.get(PAGE)

    assert response.status_code == 500
    assert "api-server log" in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text
