"""The Training pipeline screen's data, read from a real clm database (SQLite and PostgreSQL), run folders on disk
and a real MLflow store; the retrain request against a loopback HTTP server standing in for Airflow's REST API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from clm_lib.reporting import training
from clm_lib.reporting.stores import StoreDown
from tests.clm_lib.reporting.training_history import HOSTILE, LAST_CHECK, T0, fake_airflow_server, seed_training

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def seeded(cfg, db_url, tmp_path):
    cfg.database.url = db_url
    seed_training(db_url, tmp_path / "runs")
    return cfg


def test_runs_newest_first_with_what_triggered_them(seeded):
    page = training.list_runs(seeded)

    assert page.total == 5 and [r.id for r in page.items] == ["tr-e", "tr-d", "tr-c", "tr-b", "tr-a"]
    by_id = {r.id: r for r in page.items}
    assert {i: r.trigger.kind for i, r in by_id.items()} == {
        "tr-a": "volume", "tr-b": "drift", "tr-c": "manual", "tr-d": "sensor", "tr-e": "other"}  # fmt: skip
    assert by_id["tr-b"].trigger.detectors == ["task_mix"]
    assert by_id["tr-b"].trigger.summary == "drift check c2: task_mix"
    assert by_id["tr-d"].trigger.detectors == ["text_stats"]  # linked by the check its trigger names, not by id
    assert by_id["tr-c"].trigger.reason == HOSTILE and by_id["tr-c"].trigger.summary == f"manual: {HOSTILE}"
    assert by_id["tr-b"].duration_s == 630.0 and by_id["tr-e"].duration_s is None
    assert by_id["tr-b"].airflow_path == "/dags/clm_continual_training/runs/asset_triggered__2026-11-21T09%3A00%3A00"
    assert by_id["tr-e"].airflow_path is None and by_id["tr-d"].error == "CUDA out of memory"
    assert (by_id["tr-b"].steps, by_id["tr-b"].final_loss) == (1000, 0.4)


def test_filters_and_paging(seeded):
    assert [r.id for r in training.list_runs(seeded, status="succeeded").items] == ["tr-c", "tr-b", "tr-a"]
    drift = training.list_runs(seeded, trigger="drift")
    assert (drift.total, [r.id for r in drift.items]) == (1, ["tr-b"])
    second = training.list_runs(seeded, status="succeeded", offset=1, limit=1)
    assert (second.total, [r.id for r in second.items]) == (3, ["tr-b"])
    assert training.list_runs(seeded, trigger="sensor", status="succeeded").total == 0
    with pytest.raises(training.BadFilter) as bad:
        training.list_runs(seeded, trigger="cron")
    assert bad.value.field == "trigger" and "cron" in str(bad.value)
    with pytest.raises(training.BadFilter) as bad:
        training.list_runs(seeded, status="done")
    assert bad.value.field == "status"


def test_detail_has_the_checks_the_loss_curve_and_links(seeded):
    detail = training.run_detail(seeded, "tr-b")

    assert [c.check_id for c in detail.checks] == ["c2"]
    verdicts = {v.detector: v for v in detail.checks[0].verdicts}
    assert verdicts["task_mix"].triggered and verdicts["task_mix"].p_value == 8.6e-43
    assert verdicts["volume"].statistic == 250 and not verdicts["volume"].triggered
    loss = detail.loss
    assert loss.problem is None and loss.total_steps == 1000
    assert len(loss.losses) <= training.MAX_LOSS_POINTS + 1 and loss.steps[0] == 1 and loss.steps[-1] == 1000
    assert loss.first == 2.0 and loss.last == round(2.0 / (1 + 999 / 100), 5) and loss.lowest == loss.last
    assert (detail.curated_version, detail.previous_curated_version, detail.replay_version) == (4, 2, 1)
    chart = training.loss_chart(loss)
    assert len(chart.marks) == len(loss.losses) and chart.lines
    assert detail.mlflow is not None and detail.mlflow.run_id is None  # no MLflow store in this home yet
    assert "no MLflow store yet" in detail.mlflow.problem


def test_a_run_without_a_summary_says_why(seeded):
    assert "no train_summary.json" in training.run_detail(seeded, "tr-c").loss.problem
    failed = training.run_detail(seeded, "tr-d")
    assert failed.mlflow is None and failed.loss.problem == "the run recorded no output folder"
    assert [c.check_id for c in failed.checks] == ["c3"]


def test_unknown_runs_are_named(seeded):
    with pytest.raises(training.NotFound, match="tr-nope"):
        training.run_detail(seeded, "tr-nope")
    with pytest.raises(training.NotFound):
        training.run_detail(seeded, "../../etc/passwd")


def test_the_mlflow_run_is_found_by_its_tag_and_linked_only_over_http(seeded, mlflow_uri):
    from mlflow import MlflowClient

    seeded.registry.tracking_uri = mlflow_uri
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment(seeded.registry.experiment)
    logged = client.create_run(experiment, tags={"clm.training_run_id": "tr-b"})
    client.set_terminated(logged.info.run_id)

    found = training.mlflow_run(seeded, "tr-b")

    assert (found.experiment_id, found.run_id, found.problem) == (experiment, logged.info.run_id, None)
    assert found.url is None  # a SQLite store has no web UI to link to
    assert training.mlflow_run(seeded, "tr-a").problem == "no MLflow run logged for it (not registered)"
    assert training.mlflow_ui_base("https://bob:secret@mlflow.example:8443/ml/?token=t") == (
        "https://mlflow.example:8443/ml"
    )
    assert training.mlflow_ui_base("sqlite:///x.db") is None and training.mlflow_ui_base("file:///tmp/mlruns") is None


def test_next_check_from_the_last_one(seeded):
    on_time = training.schedule(seeded, now=LAST_CHECK + timedelta(minutes=20))
    assert on_time.last_check_at == LAST_CHECK and on_time.next_at == LAST_CHECK + timedelta(hours=1)
    assert not on_time.overdue
    late = training.schedule(seeded, now=LAST_CHECK + timedelta(hours=3))
    assert late.next_at == LAST_CHECK + timedelta(hours=1) and late.overdue


def test_next_check_on_an_empty_database(cfg, db_url):
    cfg.database.url = db_url
    now = T0 + timedelta(minutes=30)
    found = training.schedule(cfg, now=now)
    assert (found.last_check_at, found.next_at, found.overdue) == (None, T0 + timedelta(hours=1, minutes=17), False)


def test_the_monitor_schedule_matches_the_dag():
    text = (REPO / "dags" / "clm_drift_monitor.py").read_text()
    assert f'"{training.MONITOR_MINUTE} * * * *"' in text
    recipe = (REPO / "clm_lib" / "training" / "recipe.py").read_text()
    assert f'SUMMARY_FILE = "{training.SUMMARY_FILE}"' in recipe


def test_the_page_selects_the_newest_run_and_reports_a_bad_filter(seeded):
    page = training.build_training(seeded, {"trigger": "bogus"}, now=LAST_CHECK)
    assert page.status == 422 and page.filter_problem.field == "trigger" and page.runs.total == 5
    assert page.selected.run.id == "tr-e" and page.loss_chart is None
    chosen = training.build_training(seeded, {"run": "tr-a", "status": "succeeded"})
    assert chosen.status == 200 and chosen.selected.run.id == "tr-a" and chosen.loss_chart is not None
    assert chosen.filters == {"status": "succeeded"}


def test_fresh_install_is_a_store_down_and_creates_nothing(cfg):
    with pytest.raises(StoreDown) as down:
        training.build_training(cfg)
    assert down.value.store == "clm's database" and "clm init" in str(down.value)
    assert not (cfg.home / "clm.db").exists()


@pytest.fixture
def fake_airflow():
    with fake_airflow_server() as served:
        yield served


def test_retrain_triggers_with_the_callers_token_and_is_audited(cfg, sqlite_url, fake_airflow):
    from clm_lib.airflow.retrain import request_retraining

    cfg.database.url = sqlite_url
    url, airflow = fake_airflow
    run_id = request_retraining(cfg, airflow_url=url, token="callers-jwt", reason=f"  {HOSTILE} ", actor="airflow:otto")

    assert run_id == "manual__2026-12-07T10:00:00+00:00"
    assert airflow.seen == [{"path": "/api/v2/dags/clm_continual_training/dagRuns", "auth": "Bearer callers-jwt",
                             "body": {"logical_date": None, "conf": {"force": True, "reason": HOSTILE}}}]  # fmt: skip
    with session_scope(sqlite_url) as s:
        entry = s.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.actor, entry.target, entry.to_value, entry.reason) == (
            "training.requested",
            "airflow:otto",
            "clm_continual_training",
            run_id,
            HOSTILE,
        )
        assert entry.details["dag_run_id"] == run_id


def test_a_refused_or_empty_request_is_not_audited(cfg, sqlite_url, fake_airflow):
    from clm_lib.airflow.retrain import RetrainRefused, request_retraining
    from clm_lib.services.airflow_client import AirflowAPIError

    cfg.database.url = sqlite_url
    url, airflow = fake_airflow
    airflow.answer = (403, {"detail": "Forbidden"})
    with pytest.raises(AirflowAPIError, match="HTTP 403"):
        request_retraining(cfg, airflow_url=url, token="viewer-jwt", reason="why not", actor="airflow:vic")
    assert len(airflow.seen) == 1  # a refused caller token is not renewed with a login
    with pytest.raises(RetrainRefused):
        request_retraining(cfg, airflow_url=url, token="t", reason="   ", actor="airflow:otto")
    assert len(airflow.seen) == 1
    with session_scope(sqlite_url) as s:
        assert s.scalars(select(AuditEntry)).first() is None
