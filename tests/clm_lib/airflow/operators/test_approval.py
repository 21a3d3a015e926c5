"""The approval task of ``clm_promotion`` on a real registry and database (``deploy.strategy: alias``), with
Airflow's human-in-the-loop write captured instead of sent to a supervisor: when it asks and when it does not, what
it asks, and what each answer does to the rest of the run."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskAwaitingInput
from sqlalchemy import select

from clm_lib.airflow.operators.approval import PromotionApprovalOperator, approval_required
from clm_lib.airflow.operators.promotion import CanaryOperator, DeployOperator, GateOperator, PromoteOperator
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment
from clm_lib.deploy.approval import pending_approvals
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version


@pytest.fixture
def op_cfg(env_cfg, mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    env_cfg.registry.tracking_uri = mlflow_uri
    env_cfg.deploy.strategy = "alias"
    return env_cfg


@pytest.fixture
def asked(monkeypatch):
    """What the task wrote to Airflow's human-in-the-loop table (one dict per request)."""
    calls = []
    monkeypatch.setattr("airflow.providers.standard.operators.hitl.upsert_hitl_detail", lambda **kw: calls.append(kw))
    return calls


def _context(user="ada", **params) -> dict:
    ti = SimpleNamespace(id="ti-1", dag_id="clm_promotion", run_id="manual__1", task_id="approval", map_index=-1)
    return {"params": {"reason": "why", **params}, "dag": SimpleNamespace(dag_id="clm_promotion"),
            "dag_run": SimpleNamespace(triggering_user_name=user), "task_instance": ti, "ti": ti}  # fmt: skip


def _answer(option, user, timedout=False, comment=""):
    return {"chosen_options": [option], "params_input": {"comment": comment}, "responded_at": datetime.now(UTC),
            "responded_by_user": user, "timedout": timedout}  # fmt: skip


def _gate_and_approval(op_cfg, register_version, **params):
    from clm_lib.deploy.rollout import rollout

    register_version(op_cfg, {"routers": 90.0})
    rollout(op_cfg, actor="test", golden=None)  # version 1 champion (op_cfg was read before any approval setting)
    v2 = register_version(op_cfg, {"routers": 91.0})
    deployment_id = GateOperator(task_id="gate").execute(_context(**params))
    return v2, deployment_id, PromotionApprovalOperator(task_id="approval", deployment_id=str(deployment_id))


def _rest(deployment_id) -> str:
    return [op(task_id=op.__name__, deployment_id=deployment_id).execute({})
            for op in (DeployOperator, CanaryOperator, PromoteOperator)][-1]  # fmt: skip


def test_only_the_config_or_a_true_param_asks_for_approval():
    assert not approval_required(False, {"require_approval": False})
    assert approval_required(False, {"require_approval": True})
    assert approval_required(True, {"require_approval": False}), "a run's param never turns approval off"
    assert not approval_required(False, {"require_approval": "true"}), "only a real boolean asks"


def test_without_approval_the_task_returns_at_once_and_the_rollout_goes_on(op_cfg, register_version, asked):
    v2, deployment_id, approval = _gate_and_approval(op_cfg, register_version)

    assert approval.execute(_context()) == {"required": False}

    assert asked == []
    assert _rest(deployment_id) == "promoted" and alias_version(op_cfg, CHAMPION) == v2


def test_the_task_asks_and_waits_and_an_approval_lets_the_rollout_go_on(op_cfg, register_version, asked):
    v2, deployment_id, approval = _gate_and_approval(op_cfg, register_version, require_approval=True)

    with pytest.raises(TaskAwaitingInput):
        approval.execute(_context(require_approval=True))

    (request,) = asked
    assert request["subject"] == f"Promote clm-assistant version {v2} over champion 1?"
    assert "| routers | 90.0 | 91.0 | +1.0 | 6.0 |" in request["body"]
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert set(request["params"]) == {"comment"}, "the form shows the approver's comment, not the run's params"
    with session_scope(op_cfg.database_url) as s:
        (waiting,) = pending_approvals(s)
        assert (waiting.deployment_id, waiting.requester) == (deployment_id, "airflow:ada")
        assert waiting.airflow_url == "/dags/clm_promotion/runs/manual__1/tasks/approval/required_actions"

    done = approval.execute_complete(_context(), _answer("Approve", {"id": "7", "name": "bob"}, comment="ok"))

    assert done == {"required": True, "approved": True, "approver": "bob", "comment": "ok"}
    assert _rest(deployment_id) == "promoted" and alias_version(op_cfg, CHAMPION) == v2


def test_config_approval_assigns_the_approvers(op_cfg, register_version, asked, monkeypatch):
    monkeypatch.setenv("CLM__DEPLOY__REQUIRE_APPROVAL", "true")
    monkeypatch.setenv("CLM__DEPLOY__APPROVERS", '["7"]')
    _v2, _deployment_id, approval = _gate_and_approval(op_cfg, register_version)

    with pytest.raises(TaskAwaitingInput):
        approval.execute(_context(require_approval=False))

    assert asked[0]["assigned_users"] == [{"id": "7", "name": "7"}]
    with pytest.raises(AirflowFailException, match=r"not one of deploy\.approvers"):
        approval.execute_complete(_context(), _answer("Approve", {"id": "8", "name": "eve"}))


@pytest.mark.parametrize(
    ("answer", "raises", "kind"),
    [(_answer("Reject", {"id": "7", "name": "bob"}, comment="not now"), AirflowSkipException, "rejected"),
     (_answer("Reject", None, timedout=True), AirflowSkipException, "timeout"),
     ({"error": "The Human-in-the-loop response timeout has passed", "error_type": "timeout"},
      AirflowSkipException, "timeout"),
     (_answer("Approve", {"id": "1", "name": "ada"}), AirflowFailException, "self_approval")],
)  # fmt: skip
def test_a_refusal_skips_the_rollout_and_leaves_the_champion(op_cfg, register_version, asked, monkeypatch,
                                                             answer, raises, kind):  # fmt: skip
    monkeypatch.setenv("CLM__DEPLOY__FOUR_EYES", "true")
    _v2, deployment_id, approval = _gate_and_approval(op_cfg, register_version, require_approval=True)
    with pytest.raises(TaskAwaitingInput):
        approval.execute(_context(require_approval=True))

    with pytest.raises(raises, match=f"deployment #{deployment_id} rejected"):
        approval.execute_complete(_context(), answer)

    with session_scope(op_cfg.database_url) as s:
        assert s.get(Deployment, deployment_id).status == "rejected"
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.rejected")).one()
        assert entry.details["decision"] == kind
    assert alias_version(op_cfg, CHAMPION) == "1"
    with pytest.raises(AirflowFailException, match="rejected"):  # were the deploy to run anyway, it would refuse
        DeployOperator(task_id="deploy", deployment_id=deployment_id).execute({})


def test_the_deploy_task_refuses_when_the_approval_task_was_marked_successful_by_hand(op_cfg, register_version):
    from clm_lib.errors import DeployError

    _v2, deployment_id, _approval = _gate_and_approval(op_cfg, register_version, require_approval=True)

    with pytest.raises(DeployError, match="no approval is recorded"):
        DeployOperator(task_id="deploy", deployment_id=str(deployment_id)).execute(_context(require_approval=True))
    assert alias_version(op_cfg, CHAMPION) == "1"
