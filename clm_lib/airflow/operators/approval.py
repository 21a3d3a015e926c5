"""The approval step of ``clm_promotion``: Airflow's own ``ApprovalOperator``, asked with clm's request.

Between the gate and the deploy. When neither ``deploy.require_approval`` nor the run's ``require_approval`` param
asks for approval, it returns at once and the rollout goes on. Otherwise it writes the request
(:func:`clm_lib.deploy.approval.build_request`) to Airflow's human-in-the-loop tables, where it shows in
"Required actions" and the HITL REST API, and waits (``awaiting_input``; no worker slot, no triggerer). The answer
is judged and recorded by :mod:`clm_lib.deploy.approval`: approved, the deploy runs; rejected or timed out, the
promotion ends ``rejected`` and this task is skipped, so deploy, canary and promote are skipped (no traffic
moves); a self-approval under ``deploy.four_eyes`` (or an answer from someone not in ``deploy.approvers``) is
refused the same way and fails this task, for someone to look at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clm_lib.airflow.operators.base import ClmBaseOperator

COMMENT = "comment"
"""The approval form's one field: why the approver decided as they did (kept with the decision)."""
REFUSED = ("self_approval", "not_an_approver")
"""Decisions that fail the task rather than skip it: a rule was broken, not merely a "no"."""


def approval_required(cfg_required: bool, params: dict[str, Any] | None) -> bool:
    """The config asks for approval, or the run's ``require_approval`` param does: a param can only add it."""
    return bool(cfg_required) or (params or {}).get("require_approval") is True


def requester(context: Any, session: Any, version: str) -> str | None:
    """Who asked for this promotion: the run's triggering user, else the person who requested the training of
    ``version`` (a run a new candidate started has no triggering user)."""
    from clm_lib.deploy.approval import requester_of

    dag_run = context.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None) if dag_run else None
    return f"airflow:{user}" if user else requester_of(session, version)


class PromotionApprovalOperator(ClmBaseOperator, ApprovalOperator):
    """Ask a person to approve the gated promotion ``deployment_id`` before it is deployed (see the module)."""

    template_fields = ("subject", "body", "deployment_id")

    def __init__(self, *, deployment_id: Any, **kwargs):
        from clm_lib.deploy.approval import REJECT

        kwargs.setdefault("subject", "Approve the promotion?")  # replaced by the request when it is asked
        # Airflow merges the DAG's params in before this runs; the HITL form shows only the task's own.
        params = ParamsDict(kwargs.pop("params", None) or {})
        params[COMMENT] = Param("", type="string", maxLength=2000, title="Why (kept in the log)", source="task")
        super().__init__(defaults=REJECT, params=params, **kwargs)
        self.deployment_id = deployment_id

    def execute(self, context: Any) -> Any:
        from clm_lib.db import session_scope
        from clm_lib.deploy import history
        from clm_lib.deploy.approval import build_request, record_waiting

        self.quiet_libraries()
        cfg = self.cfg
        if not approval_required(cfg.deploy.require_approval, context.get("params")):
            self.log.info("no approval required (deploy.require_approval is off and the run did not ask for it)")
            return {"required": False}
        deployment_id = int(self.deployment_id)
        with session_scope(cfg.database_url) as s:
            dep = history.load(s, deployment_id)
            if dep.status != "pending":  # ended since the gate (superseded): nothing to approve
                raise AirflowSkipException(f"deployment #{deployment_id} is {dep.status}; nothing to approve")
            asked_by = requester(context, s, dep.version)
            request = build_request(cfg, s, deployment_id)
        self.subject, self.body = request.subject, request.body
        self.response_timeout = timedelta(seconds=cfg.deploy.approval_timeout_seconds)
        approvers = list(cfg.deploy.approvers)
        self.assigned_users = [{"id": a, "name": a} for a in approvers] or None
        ti = context["task_instance"]
        url = f"/dags/{ti.dag_id}/runs/{ti.run_id}/tasks/{ti.task_id}/required_actions"
        deadline = datetime.now(UTC) + self.response_timeout
        record_waiting(cfg, deployment_id, requester=asked_by, approvers=approvers, airflow_url=url,
                       four_eyes=cfg.deploy.four_eyes, timeout_at=deadline)  # fmt: skip
        self.log.info("waiting for approval of deployment #%s: %s", deployment_id, request.subject)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.providers.standard.operators.hitl import HITLOperator

        from clm_lib.db import session_scope
        from clm_lib.deploy import history
        from clm_lib.deploy.approval import decide, record_decision

        self.quiet_libraries()
        cfg = self.cfg
        deployment_id = int(self.deployment_id)
        if "error" in event:  # no answer and no default: Airflow's own timeout
            chosen, responder, timed_out, comment = [], None, True, ""
        else:
            # The provider's checks of the answer, without ApprovalOperator's skipping: clm decides what a "no" does.
            answer = HITLOperator.execute_complete(self, context=context, event=event)
            chosen, responder = list(answer["chosen_options"]), answer["responded_by_user"]
            timed_out = bool(event.get("timedout")) or responder is None
            comment = str((answer["params_input"] or {}).get(COMMENT) or "")
        with session_scope(cfg.database_url) as s:
            asked = _asked(s, deployment_id)
            version = history.load(s, deployment_id).version
            asked_by = asked["requester"] if "requester" in asked else requester(context, s, version)
        decision = decide(
            chosen, responder, timed_out=timed_out, requester=asked_by, comment=comment,
            four_eyes=cfg.deploy.four_eyes or bool(asked.get("four_eyes")), approvers=asked.get("approvers"),
        )  # fmt: skip
        status = record_decision(cfg, deployment_id, decision)
        self.log.info("deployment #%s: %s (%s)", deployment_id, decision.reason, status)
        if decision.kind in REFUSED:
            raise AirflowFailException(f"deployment #{deployment_id} {status}: {decision.reason}")
        if not decision.approved or status != "pending":
            raise AirflowSkipException(f"deployment #{deployment_id} {status}: {decision.reason}; no traffic moved")
        return {"required": True, "approved": True, "approver": decision.approver, "comment": comment}


def _asked(session: Any, deployment_id: int) -> dict[str, Any]:
    """What the request was asked with (its approvers), from the event that opened the wait."""
    from clm_lib.deploy.approval import asked

    return asked(session, deployment_id)
