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
    checks = drift_checks(trigger, params)
    if checks:
        trigger["drift_checks"] = checks
    return trigger


def drift_checks(trigger: dict, params: dict) -> list[str]:
    """Ids of the drift checks that requested this run: from retrain-request events, or ``drift_check_id`` in the
    run's conf (the sensor path, ``clm_retrain_watch``)."""
    from clm_lib.airflow.assets import RETRAIN_REQUEST

    ids = [ev["check_id"] for ev in trigger.get("events", []) if ev.get("asset") == RETRAIN_REQUEST.name]
    if params.get("drift_check_id"):
        ids.append(str(params["drift_check_id"]))
    return [i for i in dict.fromkeys(ids) if i]


class ContinualTrainOperator(ClmBaseOperator):
    """Train when a drift check requested it, when forced, or (a manual run) when the drift policy's volume rule
    finds enough new curated data; otherwise skip with the policy's reason. Returns the training run id."""

    template_fields = ("force", "remove_task")

    def __init__(
        self, *, force: bool | str = "{{ params.force }}", remove_task: str = "{{ params.remove_task }}", **kwargs
    ):
        super().__init__(**kwargs)
        self.force = force
        self.remove_task = remove_task

    def execute(self, context: Any) -> str:
        from clm_lib.drift.monitor import link_training_run
        from clm_lib.training.update import plan_update, run_update

        self.quiet_libraries()
        cfg = self.cfg  # loaded once: plan, update and links must see the same settings
        trigger = describe_trigger(context)
        if (self.remove_task or "").strip():
            return self._remove(cfg, self.remove_task.strip(), trigger, context)
        force = self.force if isinstance(self.force, bool) else str(self.force).lower() == "true"
        # A drift check's request is the policy's decision (volume included): it needs no second volume threshold.
        plan = plan_update(cfg, force=force, requested=bool(trigger.get("drift_checks")))
        self.log.info("update plan: %s", plan)
        if not plan.should_train:
            raise AirflowSkipException(plan.reason)
        run = run_update(
            cfg,
            trigger={**trigger, "plan": plan.reason},
            plan=plan,
            airflow_dag_id=context["dag"].dag_id,
            airflow_run_id=context["run_id"],
            actor=self.actor(context),
        )
        for check_id in trigger.get("drift_checks", []):
            linked = link_training_run(cfg, check_id, run.id)
            self.log.info("drift check %s: %d triggering report(s) linked to %s", check_id, linked, run.id)
        self.log.info("training run %s: %s", run.id, run.metrics)
        return run.id

    def _remove(self, cfg, task: str, trigger: dict, context: Any) -> str:
        """No training: the champion without ``task``'s adapter becomes this run's candidate (the Multi-task
        screen's "remove task"); evaluate, register and the promotion gate follow as for any update."""
        from clm_lib.training.removal import run_removal

        run = run_removal(cfg, task, trigger=trigger, airflow_dag_id=context["dag"].dag_id,
                          airflow_run_id=context["run_id"])  # fmt: skip
        self.log.info("removal run %s: %s", run.id, run.strategies.get("task_removal"))
        return run.id
