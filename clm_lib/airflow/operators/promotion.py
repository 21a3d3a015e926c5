"""The promotion's tasks: gate → deploy → canary → promote, each a call into :mod:`clm_lib.deploy.rollout`.

The gate opens a deployment in clm's database and hands its id to the next tasks through XCom; every later
task reads the deployment's state from there, so a retried or re-run task does nothing twice.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.operators.base import ClmBaseOperator


def candidate_version(context: Any) -> str | None:
    """The version to gate: an explicit ``version`` param wins, then the triggering Asset event."""
    params = context.get("params") or {}
    if params.get("version"):
        return str(params["version"])
    events = (context.get("triggering_asset_events") or {}).get(CANDIDATE) or []
    versions = [ev.extra.get("version") for ev in events if ev.extra and ev.extra.get("version")]
    return str(versions[-1]) if versions else None


class GateOperator(ClmBaseOperator):
    """Gate the candidate against the champion; skip the rest of the promotion when it fails."""

    def execute(self, context: Any) -> int:
        from clm_lib.alerts.sources import gate_refused
        from clm_lib.deploy.rollout import result, start

        self.quiet_libraries()
        reason = str((context.get("params") or {}).get("reason") or "")
        deployment_id = start(self.cfg, candidate_version(context), actor=self.actor(context), reason=reason)
        r = result(self.cfg, deployment_id)
        self.log.info("deployment #%s of version %s: %s", deployment_id, r.version, r.status)
        gate_refused(self.cfg, r)  # an alert when the gate said no
        if r.status in ("gate_failed", "skipped"):
            # Skipped, not failed: the pipeline worked and the gate said no. The UI shows it apart from errors.
            raise AirflowSkipException(f"version {r.version}: {r.outcome}; champion stays {r.champion_before}")
        return deployment_id


class _DeploymentStep(ClmBaseOperator):
    template_fields = ("deployment_id",)

    def __init__(self, *, deployment_id: Any, **kwargs):
        super().__init__(**kwargs)
        self.deployment_id = deployment_id

    def finish(self, status: str, ok: tuple[str, ...]) -> str:
        from clm_lib.deploy.rollout import result

        r = result(self.cfg, int(self.deployment_id))
        self.log.info("deployment #%s of version %s: %s %s", r.deployment_id, r.version, status, r.outcome)
        if status not in ok:
            # No retry: the deployment has ended (rolled back, aborted, failed) and says why.
            raise AirflowFailException(f"deployment #{r.deployment_id} of version {r.version} {status}: {r.outcome}")
        return status


class DeployOperator(_DeploymentStep):
    """Load the candidate into the idle slot and smoke-test it."""

    def execute(self, context: Any) -> str:
        from clm_lib.airflow.operators.approval import approval_required
        from clm_lib.deploy.approval import ensure_approved
        from clm_lib.deploy.rollout import deploy

        if approval_required(self.cfg.deploy.require_approval, context.get("params")):
            ensure_approved(self.cfg, int(self.deployment_id))
        self.quiet_libraries()
        return self.finish(deploy(self.cfg, int(self.deployment_id)), ok=("deployed", "pending"))


class CanaryOperator(_DeploymentStep):
    """Shift traffic in steps with bake windows; the automatic rollback fails this task with the breach."""

    def execute(self, context: Any) -> str:
        from clm_lib.deploy.rollout import canary

        self.quiet_libraries()
        return self.finish(canary(self.cfg, int(self.deployment_id)), ok=("baked", "pending"))


class PromoteOperator(_DeploymentStep):
    """Move ``champion`` (and ``previous``) to the candidate that baked at full traffic."""

    def execute(self, context: Any) -> str:
        from clm_lib.deploy.rollout import complete

        self.quiet_libraries()
        return self.finish(complete(self.cfg, int(self.deployment_id)), ok=("promoted",))
