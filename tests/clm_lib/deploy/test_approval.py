"""Approval of promotions without Airflow: what the request says, who may decide it, what each decision does to
the deployment, the registry and the audit log, and the regulated profile."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from clm_lib.config import load_config
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, DriftReport, TrainingRun
from clm_lib.deploy.approval import (
    APPROVE,
    REJECT,
    asked,
    build_request,
    decide,
    ensure_approved,
    md,
    pending_approvals,
    record_decision,
    record_waiting,
    requester_of,
)
from clm_lib.deploy.config import DeployConfig
from clm_lib.deploy.rollout import canary, complete, deploy, rollout, start
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, client

from .fakes import FakeBackend

REPO = Path(__file__).resolve().parents[3]
BOB = {"id": "7", "name": "bob"}


@pytest.fixture
def gated(deploy_cfg, register_version):
    """Version 1 champion; version 2 gated against it (routers 90 -> 88, billing new at 70), not yet deployed."""
    be = FakeBackend()
    register_version(deploy_cfg, {"routers": 90.0})
    rollout(deploy_cfg, backend=be, golden=None)
    v2 = register_version(deploy_cfg, {"routers": 88.0, "billing": 70.0})
    deployment_id = start(deploy_cfg, v2, actor="airflow:ada", reason="new <b>billing</b> data [click](http://x)")
    return deploy_cfg, be, v2, deployment_id


def test_md_neutralizes_markdown_and_html():
    out = md("**bold** <script>alert(1)</script> [x](javascript:y) line\nbreak | pipe")
    assert "<" not in out and "\n" not in out
    assert r"\*\*bold\*\*" in out and r"\[x\]\(javascript:y\)" in out and r"\|" in out
    assert len(md("a" * 500, limit=50)) == 50


def test_the_request_shows_deltas_margins_drift_data_and_a_link(gated):
    cfg, _be, v2, deployment_id = gated
    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, f"run-{v2}")
        run.curated_version, run.replay_version, run.new_rows = 12, 11, 340
        run.trigger = {"kind": "asset", "drift_checks": ["chk-1"]}
        s.add(DriftReport(check_id="chk-1", detector="task_mix", status="ok", drift=True, triggered=True,
                          explanation="new task *billing* at 40%"))  # fmt: skip
        s.flush()
        req = build_request(cfg, s, deployment_id)
    assert req.subject == f"Promote clm-assistant version {v2} over champion 1?"
    by_task = {t.task: t for t in req.scores}
    assert by_task["routers"].delta == pytest.approx(-2.0) and by_task["routers"].margin == pytest.approx(3.0)
    assert by_task["billing"].champion is None and by_task["billing"].margin == pytest.approx(70.0)
    assert "| routers | 90.0 | 88.0 | -2.0 | 3.0 |" in req.body
    assert "| billing | — | 70.0 | — | 70.0 |" in req.body
    assert r"task\_mix: new task \*billing\* at 40%" in req.body
    assert "curated version: 12" in req.body and "replay version: 11" in req.body and "new rows: 340" in req.body
    assert f"(/pluginsv2/clm/models/{v2})" in req.body
    # The requester's reason is shown, but as text: no HTML, no live link.
    assert "<b>" not in req.body and r"\[click\]\(http://x\)" in req.body


def test_decisions():
    ok = decide([APPROVE], BOB, timed_out=False, requester="airflow:ada", four_eyes=True, comment="fine")
    assert (ok.approved, ok.kind, ok.approver, ok.reason) == (True, "approved", "bob", "approved by bob: fine")
    no = decide([REJECT], BOB, timed_out=False, requester=None, four_eyes=False)
    assert (no.approved, no.kind, no.reason) == (False, "rejected", "rejected by bob")
    late = decide([REJECT], None, timed_out=True, requester=None, four_eyes=False)
    assert (late.approved, late.kind, late.approver) == (False, "timeout", None)
    # A response that names nobody is no answer, even if it says Approve.
    assert decide([APPROVE], None, timed_out=False, requester=None, four_eyes=False).kind == "timeout"
    own = decide([APPROVE], {"id": "1", "name": "ada"}, timed_out=False, requester="airflow:ada", four_eyes=True)
    assert (own.approved, own.kind) == (False, "self_approval") and "ada asked for this promotion" in own.reason
    # Without four eyes the requester may approve; with it, nobody asked (a drift check did) means anyone may.
    assert decide([APPROVE], {"id": "1", "name": "ada"}, timed_out=False, requester="airflow:ada",
                  four_eyes=False).approved  # fmt: skip
    assert decide([APPROVE], BOB, timed_out=False, requester=None, four_eyes=True).approved
    outsider = decide([APPROVE], BOB, timed_out=False, requester=None, four_eyes=False, approvers=["3"])
    assert (outsider.approved, outsider.kind) == (False, "not_an_approver")


def test_approval_lets_the_rollout_go_on_and_is_audited(gated):
    cfg, be, v2, deployment_id = gated
    record_waiting(cfg, deployment_id, requester="airflow:ada", approvers=[], airflow_url="/dags/x/required_actions",
                   timeout_at=datetime.now(UTC) + timedelta(minutes=5), four_eyes=True)  # fmt: skip
    with session_scope(cfg.database_url) as s:
        (waiting,) = pending_approvals(s)
        assert (waiting.deployment_id, waiting.version, waiting.champion) == (deployment_id, v2, "1")
        assert (waiting.requester, waiting.airflow_url) == ("airflow:ada", "/dags/x/required_actions")
        assert asked(s, deployment_id)["four_eyes"] is True

    decision = decide([APPROVE], BOB, timed_out=False, requester="airflow:ada", four_eyes=True)
    assert record_decision(cfg, deployment_id, decision) == "pending"

    with session_scope(cfg.database_url) as s:
        assert pending_approvals(s) == []
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.approved")).all()
        assert (entry.actor, entry.to_value, entry.details["decision"]) == ("airflow:bob", v2, "approved")
    assert client(cfg).get_model_version(cfg.registry.model_name, v2).tags["clm.approval.by"] == "bob"
    deploy(cfg, deployment_id, backend=be)
    canary(cfg, deployment_id, backend=be, golden=None)
    assert complete(cfg, deployment_id, backend=be) == "promoted"
    assert alias_version(cfg, CHAMPION) == v2


@pytest.mark.parametrize(
    ("responder", "chosen", "timed_out", "kind"),
    [(BOB, [REJECT], False, "rejected"), (None, [REJECT], True, "timeout"),
     ({"id": "1", "name": "ada"}, [APPROVE], False, "self_approval")],
)  # fmt: skip
def test_a_refusal_ends_the_promotion_rejected_and_leaves_the_champion(gated, responder, chosen, timed_out, kind):
    cfg, be, v2, deployment_id = gated
    weights = be.weights()
    decision = decide(chosen, responder, timed_out=timed_out, requester="airflow:ada", four_eyes=True,
                      comment="too risky")  # fmt: skip
    assert record_decision(cfg, deployment_id, decision) == "rejected"

    with session_scope(cfg.database_url) as s:
        dep = s.get(Deployment, deployment_id)
        assert dep.status == "rejected" and "champion 1 unchanged" in dep.outcome
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.rejected")).all()
        assert entry.details["decision"] == kind and entry.reason == decision.reason
        assert entry.actor == (f"airflow:{responder['name']}" if responder else "clm:approval-timeout")
    tags = client(cfg).get_model_version(cfg.registry.model_name, v2).tags
    assert tags["clm.approval"] == "rejected" and tags["clm.approval.reason"] == decision.reason
    # Nothing was deployed, and the later steps refuse to start.
    assert deploy(cfg, deployment_id, backend=be) == "rejected"
    assert be.weights() == weights and alias_version(cfg, CHAMPION) == "1"


def test_a_decision_on_a_promotion_that_ended_meanwhile_changes_nothing_but_is_audited(gated):
    cfg, _be, _v2, deployment_id = gated
    with session_scope(cfg.database_url) as s:
        s.get(Deployment, deployment_id).status = "superseded"
    assert record_decision(cfg, deployment_id, decide([APPROVE], BOB, timed_out=False, requester=None,
                                                      four_eyes=False)) == "superseded"  # fmt: skip
    with session_scope(cfg.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.approved")).one()
        assert entry.details["status_before"] == "superseded"


def test_requester_of_a_version_is_who_requested_its_training(deploy_cfg, register_version):
    from clm_lib import audit

    v1 = register_version(deploy_cfg)
    with session_scope(deploy_cfg.database_url) as s:
        assert requester_of(s, v1) is None
        s.get(TrainingRun, f"run-{v1}").airflow_run_id = "manual__1"
        audit.record(s, action="training.requested", target="clm_continual_training", actor="airflow:ada",
                     to_value="manual__1", details={"dag_run_id": "manual__1"})  # fmt: skip
        s.flush()
        assert requester_of(s, v1) == "airflow:ada"


def test_approval_timeout_must_end_before_the_reconciler_would():
    with pytest.raises(ValueError, match=r"deploy.approval_timeout_seconds \(3600\) must be shorter than"):
        DeployConfig(approval_timeout_seconds=3600)
    DeployConfig(approval_timeout_seconds=3600, reconciler={"stale_after_seconds": 4000})
    with pytest.raises(ValueError, match="approvers"):
        DeployConfig(approvers=[""])


def test_the_regulated_profile_is_clm_yaml_with_approval_on(tmp_path):
    cfg = load_config(REPO / "include" / "regulated.yaml", environ={"CLM_HOME": str(tmp_path)})
    assert cfg.deploy.require_approval and cfg.deploy.four_eyes
    assert not load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path)}).deploy.require_approval
    regulated, base = (yaml.safe_load((REPO / "include" / f).read_text()) for f in ("regulated.yaml", "clm.yaml"))
    extra = {"require_approval", "four_eyes", "approval_timeout_seconds", "approvers", "reconciler"}
    assert {k: v for k, v in regulated.pop("deploy").items() if k not in extra} == base.pop("deploy")
    assert regulated == base, "include/regulated.yaml differs from include/clm.yaml beyond deploy's approval settings"


def test_the_deploy_step_refuses_a_promotion_nobody_approved(gated):
    """Marking the approval task successful by hand in Airflow must not put the candidate on traffic."""
    from clm_lib.errors import DeployError

    cfg, _be, _v2, deployment_id = gated
    with pytest.raises(DeployError, match="no approval is recorded"):
        ensure_approved(cfg, deployment_id)

    with session_scope(cfg.database_url) as s:
        assert s.get(Deployment, deployment_id).status == "rejected"
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.rejected")).all()
        assert entry.details["decision"] == "not_approved"
    assert alias_version(cfg, CHAMPION) == "1"


def test_the_deploy_step_lets_an_approved_promotion_through(gated):
    cfg, _be, _v2, deployment_id = gated
    decision = decide([APPROVE], BOB, timed_out=False, requester="airflow:ada", four_eyes=True)
    record_decision(cfg, deployment_id, decision)

    ensure_approved(cfg, deployment_id)  # raises when it is not

    with session_scope(cfg.database_url) as s:
        assert s.get(Deployment, deployment_id).status == "pending"
