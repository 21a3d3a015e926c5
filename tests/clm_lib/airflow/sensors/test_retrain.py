"""RetrainTriggerSensor: returns a pending request at once, otherwise defers to the triggerer."""

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from clm_lib.airflow.sensors.retrain import RetrainTriggerSensor
from clm_lib.airflow.triggers.retrain import RetrainRequestTrigger


class _TI:
    def __init__(self, last=None):
        self.last = last

    def xcom_pull(self, task_ids, include_prior_dates=False):
        assert include_prior_dates  # the last request handed out is read from earlier DAG runs
        return self.last


def test_defers_to_the_trigger_when_nothing_is_pending(env_cfg):
    sensor = RetrainTriggerSensor(task_id="wait", poke_interval=7, clm_conn_id="clm_staging")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": _TI()})
    trigger = deferred.value.trigger
    assert isinstance(trigger, RetrainRequestTrigger) and trigger.poll_interval == 7
    assert trigger.clm_conn_id == "clm_staging"  # the triggerer resolves the config the sensor did
    assert deferred.value.method_name == "execute_complete"
    assert datetime.fromisoformat(trigger.since) < datetime.now(UTC) - timedelta(hours=23)


def test_returns_a_pending_request_without_deferring(env_cfg, request_drift):
    decision = request_drift(datetime.now(UTC))
    got = RetrainTriggerSensor(task_id="wait").execute({"ti": _TI()})
    assert got["check_id"] == decision.check_id


def test_a_request_already_handed_out_is_not_returned_again(env_cfg, request_drift):
    request = request_drift(datetime.now(UTC) - timedelta(minutes=1))
    handed_out = {"check_id": request.check_id, "created_at": datetime.now(UTC).isoformat()}
    sensor = RetrainTriggerSensor(task_id="wait", deferrable=False)
    assert sensor.poke({"ti": _TI(handed_out)}).is_done is False
    assert sensor.poke({"ti": _TI()}).is_done is True


def test_execute_complete_returns_the_request_or_fails_clearly():
    sensor = RetrainTriggerSensor(task_id="wait")
    request = {"check_id": "abc", "created_at": "2026-11-24T12:00:00+00:00", "reasons": []}
    assert sensor.execute_complete({}, {"status": "requested", "request": request}) == request
    with pytest.raises(AirflowException, match="database is locked"):
        sensor.execute_complete({}, {"status": "error", "message": "OperationalError: database is locked"})
