"""Stored gate decisions and drift verdicts for the configuration preview's impact (shared by its tests)."""

from __future__ import annotations

from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport, Evaluation, GateDecision, TrainingRun

HOSTILE = "<script>alert('x')</script> & why"


def seed_gate_history(url: str) -> None:
    """Champion 1 (routers 80); candidate 2 dropped 3 points (passes a 5-point budget, not a 1-point one);
    candidate 3 dropped 0.5 (passes both). Drift: text_stats p-values 0.004 (drift at 0.01) and 0.03 (none)."""
    scores = {"1": 80.0, "2": 77.0, "3": 79.5}
    with session_scope(url) as s:
        for version, score in scores.items():
            s.add(TrainingRun(id=f"run-{version}", status="succeeded", base_model="base", config_hash="h",
                              model_version=version, tasks=["routers"]))  # fmt: skip
            s.flush()
            s.add(Evaluation(training_run_id=f"run-{version}", model_version=version, tasks=["routers"],
                             scores={"routers": score}, average_accuracy=score))  # fmt: skip
        for version in ("2", "3"):
            s.add(GateDecision(model_name="clm-assistant", model_version=version, champion_version="1", passed=True))
        for i, (p, drift) in enumerate([(0.004, True), (0.03, False)]):
            s.add(DriftReport(check_id=f"c{i}", detector="text_stats", status="ok", drift=drift, p_value=p,
                              threshold=0.01))  # fmt: skip
