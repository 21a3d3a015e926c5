"""``clm_promotion`` run by Airflow itself (``dag.test()``, its own trigger rules) with clm's steps stubbed: the
approval step passes straight through when no approval is asked for, and a refused approval skips (or, a broken
four-eyes rule, fails) everything after it, so no deploy, canary or promote runs."""

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clm_lib.airflow.operators import approval, promotion

pytestmark = pytest.mark.slow
STEPS = ("deploy", "canary", "promote")


@pytest.fixture(scope="module")
def promotion_dag():
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils import db
    from airflow.utils.session import create_session

    db.initdb()  # the session's AIRFLOW_HOME (tests/conftest.py) is a fresh temporary folder
    with create_session() as s:
        s.merge(DagBundleModel(name="dags-folder"))
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "clm_promotion.py"))
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags["clm_promotion"]


@pytest.fixture
def ran(promotion_dag, monkeypatch):
    """Run the DAG with the gate and the approval doing ``gate``/``approve``; which steps ran, and each task's state."""
    executed: list[str] = []
    monkeypatch.setattr(approval.PromotionApprovalOperator, "cfg", SimpleNamespace(
        deploy=SimpleNamespace(require_approval=False)))  # fmt: skip
    for task in promotion_dag.tasks:  # the failure callbacks would reach for clm's database: not under test here
        monkeypatch.setattr(task, "on_failure_callback", [])
    monkeypatch.setattr(promotion_dag, "on_failure_callback", None)

    def step(self, context):
        executed.append(self.task_id)
        return "ok"

    for cls in (promotion.DeployOperator, promotion.CanaryOperator, promotion.PromoteOperator):
        monkeypatch.setattr(cls, "execute", step)

    def run(gate=lambda self, context: 5, approve=None, **conf):
        monkeypatch.setattr(promotion.GateOperator, "execute", gate)
        if approve is not None:
            monkeypatch.setattr(approval.PromotionApprovalOperator, "execute", approve)
        dag_run = promotion_dag.test(run_conf=conf)
        return executed, {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}

    return run


def _raise(exc):
    def execute(self, context):
        raise exc

    return execute


def test_without_approval_the_approval_step_passes_and_the_rollout_runs(ran):
    executed, states = ran()
    assert executed == list(STEPS)
    assert set(states.values()) == {"success"}, states


def test_a_rejected_promotion_skips_every_step_after_the_approval(ran):
    executed, states = ran(approve=_raise(AirflowSkipException("rejected by bob")), require_approval=True)
    assert executed == []
    assert states["approval"] == "skipped" and all(states[t] == "skipped" for t in STEPS), states


def test_a_refused_self_approval_fails_the_approval_and_nothing_after_it_runs(ran):
    executed, states = ran(approve=_raise(AirflowFailException("four-eyes rule")), require_approval=True)
    assert executed == []
    assert states["approval"] == "failed" and all(states[t] == "upstream_failed" for t in STEPS), states


def test_a_failed_gate_skips_the_approval_too(ran):
    executed, states = ran(gate=_raise(AirflowSkipException("gate failed")))
    assert executed == []
    assert states["gate"] == "skipped" and states["approval"] == "skipped", states
