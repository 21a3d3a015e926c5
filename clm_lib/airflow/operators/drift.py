"""DriftCheckOperator: one drift check of the lake against the champion; a retrain request when the policy says so."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import RETRAIN_REQUEST
from clm_lib.airflow.operators.base import ClmBaseOperator


def request_extra(decision: dict[str, Any]) -> dict[str, Any]:
    """What the retrain-request event carries: the decision without the per-detector details (those stay in
    ``drift_reports``, one row per detector, found by ``check_id``)."""
    keep = ("check_id", "retrain", "reasons", "fired", "suppressed", "new_rows", "checked_at", "summary")
    return {k: decision[k] for k in keep if k in decision}


class DriftCheckOperator(ClmBaseOperator):
    """Run every enabled detector and the retraining policy; store the reports in clm's database.

    Emits a ``clm_retrain_request`` Asset event carrying the decision when a retraining is requested, and skips
    (no event) with the policy's reason otherwise. Returns the full decision as XCom either way.
    """

    ui_color = "#fdf2e0"

    def __init__(self, **kwargs):
        kwargs.setdefault("outlets", [RETRAIN_REQUEST])
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        from clm_lib.alerts.sources import drift_retrain
        from clm_lib.drift.monitor import check_lake

        self.quiet_libraries()
        decision = check_lake(self.cfg)
        for res in decision.results:
            self.log.info("%-14s %-13s %s", res.detector, res.status, res.explanation)
        payload = decision.to_dict()
        context["ti"].xcom_push(key="decision", value=payload)
        drift_retrain(self.cfg, decision)  # an alert when it requests a retraining
        if not decision.retrain:
            raise AirflowSkipException(decision.summary)
        context["outlet_events"][RETRAIN_REQUEST].extra = request_extra(payload)
        self.log.info("retraining requested: %s", decision.summary)
        return payload
