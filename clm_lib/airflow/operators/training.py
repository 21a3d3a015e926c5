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


class TrainingDecision(ClmBaseOperator):
    """What every training path shares: train when a drift check requested it, when forced, or (a manual run) when
    the drift policy's volume rule finds enough new curated data; otherwise skip with the policy's reason. With
    ``remove_task`` nothing is trained (:meth:`remove`)."""

    template_fields = ("force", "remove_task")

    def __init__(
        self, *, force: bool | str = "{{ params.force }}", remove_task: str = "{{ params.remove_task }}", **kwargs
    ):
        super().__init__(**kwargs)
        self.force = force
        self.remove_task = remove_task

    def task_to_remove(self) -> str:
        return (self.remove_task or "").strip()

    def plan(self, cfg, trigger: dict) -> Any:
        """The update plan; raises ``AirflowSkipException`` with the policy's reason when there is nothing to train."""
        from clm_lib.training.update import plan_update

        force = self.force if isinstance(self.force, bool) else str(self.force).lower() == "true"
        # A drift check's request is the policy's decision (volume included): it needs no second volume threshold.
        plan = plan_update(cfg, force=force, requested=bool(trigger.get("drift_checks")))
        self.log.info("update plan: %s", plan)
        if not plan.should_train:
            raise AirflowSkipException(plan.reason)
        return plan

    def link_checks(self, cfg, check_ids: list[str], run_id: str) -> None:
        from clm_lib.drift.monitor import link_training_run

        for check_id in check_ids:
            linked = link_training_run(cfg, check_id, run_id)
            self.log.info("drift check %s: %d triggering report(s) linked to %s", check_id, linked, run_id)

    def remove(self, cfg, task: str, trigger: dict, context: Any) -> str:
        """No training: the champion without ``task``'s adapter becomes this run's candidate (the Multi-task
        screen's "remove task"); evaluate, register and the promotion gate follow as for any update."""
        from clm_lib.training.removal import run_removal

        run = run_removal(cfg, task, trigger=trigger, airflow_dag_id=context["dag"].dag_id,
                          airflow_run_id=context["run_id"])  # fmt: skip
        self.log.info("removal run %s: %s", run.id, run.strategies.get("task_removal"))
        return run.id


class ContinualTrainOperator(TrainingDecision):
    """One continual update trained in this worker (``training.placement: local``), or a skip that says why not.
    Returns the training run id."""

    def execute(self, context: Any) -> str:
        from clm_lib.training.update import run_update

        self.quiet_libraries()
        cfg = self.cfg  # loaded once: plan, update and links must see the same settings
        trigger = describe_trigger(context)
        if self.task_to_remove():
            return self.remove(cfg, self.task_to_remove(), trigger, context)
        plan = self.plan(cfg, trigger)
        run = run_update(
            cfg,
            trigger={**trigger, "plan": plan.reason},
            plan=plan,
            airflow_dag_id=context["dag"].dag_id,
            airflow_run_id=context["run_id"],
            actor=self.actor(context),
        )
        self.link_checks(cfg, trigger.get("drift_checks", []), run.id)
        self.log.info("training run %s: %s", run.id, run.metrics)
        return run.id
