"""ContinualTrainOperator: one continual update, or a skip that says why not."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.operators.base import ClmBaseOperator


def describe_trigger(context: Any) -> dict:
    """What started this run, for the training record: asset events, or a person with a reason."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    events = context.get("triggering_asset_events") or {}
    trigger: dict[str, Any] = {"run_type": str(getattr(dag_run, "run_type", "") or "")}
    if events:
        trigger["kind"] = "asset"
        trigger["events"] = [
            {"asset": getattr(asset, "name", str(asset)), **(ev.extra or {})}
            for asset, evs in events.items()
            for ev in evs
        ]
    else:
        trigger["kind"] = "manual"
    if params.get("reason"):
        trigger["reason"] = params["reason"]
    return trigger


class ContinualTrainOperator(ClmBaseOperator):
    """Train when enough new curated data arrived (or when forced); returns the training run id."""

    template_fields = ("force",)

    def __init__(self, *, force: bool | str = "{{ params.force }}", **kwargs):
        super().__init__(**kwargs)
        self.force = force

    def execute(self, context: Any) -> str:
        from clm_lib.training.update import plan_update, run_update

        self.quiet_libraries()
        force = self.force if isinstance(self.force, bool) else str(self.force).lower() == "true"
        plan = plan_update(self.cfg, force=force)
        self.log.info("update plan: %s", plan)
        if not plan.should_train:
            raise AirflowSkipException(plan.reason)
        run = run_update(
            self.cfg,
            trigger={**describe_trigger(context), "plan": plan.reason},
            plan=plan,
            airflow_dag_id=context["dag"].dag_id,
            airflow_run_id=context["run_id"],
            actor=self.actor(context),
        )
        self.log.info("training run %s: %s", run.id, run.metrics)
        return run.id
