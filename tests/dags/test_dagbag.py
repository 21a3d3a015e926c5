"""Every DAG file imports cleanly, is wired as documented, and stays cheap to parse."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= {"clm_ingest", "clm_ingest_stream", "clm_continual_training", "clm_promotion"}


def test_drift_monitor_runs_on_curated_data_and_hourly_and_requests_retraining(dagbag):
    from airflow.timetables.assets import AssetOrTimeSchedule

    monitor = dagbag.dags["clm_drift_monitor"]
    assert isinstance(monitor.timetable, AssetOrTimeSchedule)
    assert [a.name for a in monitor.timetable.asset_condition.objects] == ["clm_curated"]
    assert monitor.timetable.timetable.summary == "17 * * * *"
    assert [a.name for a in monitor.get_task("check").outlets] == ["clm_retrain_request"]


def test_sensor_path_waits_deferred_and_is_off_until_switched_on(dagbag):
    watch = dagbag.dags["clm_retrain_watch"]
    assert watch.is_paused_upon_creation is True
    wait, train = watch.get_task("wait"), watch.get_task("train")
    assert type(wait).__name__ == "RetrainTriggerSensor" and wait.deferrable
    assert train.trigger_dag_id == "clm_continual_training"
    assert set(train.conf) == {"drift_check_id", "reason"}


def test_training_is_scheduled_on_retrain_requests_and_chains_to_promotion(dagbag):
    training = dagbag.dags["clm_continual_training"]
    assert [t.task_id for t in training.topological_sort()] == ["train", "evaluate", "register"]
    assert [a.name for a in training.timetable.asset_condition.objects] == ["clm_retrain_request"]
    promotion = dagbag.dags["clm_promotion"]
    assert [a.name for a in promotion.timetable.asset_condition.objects] == ["clm_candidate"]
    register = training.get_task("register")
    assert [a.name for a in register.outlets] == ["clm_candidate"]
    ingest = dagbag.dags["clm_ingest"].get_task("ingest")
    assert [a.name for a in ingest.outlets] == ["clm_curated"]


def test_manual_trigger_params(dagbag):
    assert set(dagbag.dags["clm_continual_training"].params) == {"force", "reason", "drift_check_id", "remove_task"}
    assert set(dagbag.dags["clm_promotion"].params) == {"version", "reason", "require_approval"}
    assert set(dagbag.dags["clm_rollback"].params) == {"to_version", "reason"}


def test_promotion_rolls_out_step_by_step_and_rollback_is_manual(dagbag):
    promotion = dagbag.dags["clm_promotion"]
    assert [t.task_id for t in promotion.topological_sort()] == ["gate", "approval", "deploy", "canary", "promote"]
    assert all(t.retries == 0 for t in promotion.tasks), "a deployment step is never retried blindly"
    rollback = dagbag.dags["clm_rollback"]
    assert type(rollback.timetable).__name__ == "NullTimetable" and [t.task_id for t in rollback.tasks] == ["rollback"]


def test_a_killed_promotion_task_is_settled_and_the_champion_is_watched(dagbag):
    from clm_lib.airflow.callbacks import settle_deployment

    promotion = dagbag.dags["clm_promotion"]
    assert all(t.on_failure_callback in (settle_deployment, [settle_deployment]) for t in promotion.tasks)
    watch = dagbag.dags["clm_deploy_watch"]
    assert watch.timetable.expression == "*/2 * * * *" and watch.catchup is False and watch.max_active_runs == 1
    assert watch.is_paused_upon_creation is False
    assert [t.task_id for t in watch.topological_sort()] == ["reconcile", "guard"]
    assert watch.get_task("guard").trigger_rule == "all_done"


def test_lake_maintenance_runs_daily_one_table_after_the_other(dagbag):
    maintenance = dagbag.dags["clm_lake_maintenance"]
    assert maintenance.timetable.expression == "0 0 * * *"
    assert maintenance.max_active_runs == 1 and not maintenance.catchup
    tables = ["raw", "curated", "quarantine", "replay", "eval"]
    assert [t.task_id for t in maintenance.topological_sort()] == [f"maintain_{t}" for t in tables]
    assert maintenance.get_task("maintain_curated").table == "curated"
    assert maintenance.get_task("maintain_eval").trigger_rule == "all_done"  # a failed table does not stop the rest


def test_dag_files_do_not_import_ml_stacks_at_parse_time():
    code = (
        "import sys, runpy, glob\n"
        f"for f in sorted(glob.glob('{REPO}/dags/*.py')): runpy.run_path(f)\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'mlflow', 'great_expectations', 'deltalake',"
        " 'pyarrow', 'numpy')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy imports at parse time: {out.stdout}"


def test_every_clm_dag_raises_an_alert_when_a_run_fails_and_alerts_go_out_every_minute(dagbag):
    from clm_lib.airflow.callbacks import dag_failed

    clm = [d for d in dagbag.dags.values() if "clm" in d.tags]
    assert len(clm) >= 8
    assert all(d.on_failure_callback in (dag_failed, [dag_failed]) for d in clm), [d.dag_id for d in clm]
    alerts = dagbag.dags["clm_alerts"]
    assert alerts.timetable.expression == "*/2 * * * *" and alerts.max_active_runs == 1 and not alerts.catchup
    assert [t.task_id for t in alerts.topological_sort()] == ["check_stores", "deliver"]
    assert alerts.get_task("deliver").trigger_rule == "all_done"
