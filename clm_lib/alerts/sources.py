"""The pipeline's alerts, one function per source, so each source adds a single call: drift that requests a
retraining, a gate refusal, an automatic rollback (canary or guard), a guard breach not rolled back.

Each names its cause (what one open alert stands for), severity, message and links, and goes through
:func:`clm_lib.alerts.core.record_alert`: none of them raises, so a database hiccup while alerting never stops the
step that raised it. A failed DAG run (:func:`clm_lib.airflow.callbacks.dag_failed`) and a store down
(:mod:`clm_lib.alerts.stores`) raise theirs where they are detected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from clm_lib.alerts.core import Link, raise_alert, record_alert

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from clm_lib.config import ClmConfig

SCREENS = "/pluginsv2/clm"
log = logging.getLogger(__name__)


def _emit(cfg: ClmConfig, session: Session | None, **alert: Any) -> int | None:
    """In ``session`` when the caller is inside a transaction (on SQLite a second connection would wait for its write
    lock), in a savepoint so a failure leaves the caller's transaction whole; else in a transaction of its own."""
    if session is None:
        return record_alert(cfg.database_url, **alert)
    try:
        with session.begin_nested():
            a = raise_alert(session, **alert)
        return a.id
    except Exception:
        log.exception("could not record alert %s", alert.get("cause"))
        return None


def drift_retrain(cfg: ClmConfig, decision: Any) -> int | None:
    """A drift check requested a retraining (one open alert per model: later checks count up)."""
    if not getattr(decision, "retrain", False):
        return None
    model = cfg.registry.model_name
    said = f"drift check {decision.check_id} requested a retraining of {model}: {decision.summary}"
    return record_alert(cfg.database_url, kind="drift_retrain", cause=f"drift_retrain:{model}", severity="warning",
                        message=said, links=[Link("Drift", f"{SCREENS}/drift")])  # fmt: skip


def gate_refused(cfg: ClmConfig, result: Any) -> int | None:
    """The gate refused a candidate (one alert per version). ``result``: a
    :class:`clm_lib.deploy.rollout.RolloutResult`; anything but ``gate_failed`` raises nothing."""
    if getattr(result, "status", None) != "gate_failed":
        return None
    model, version = cfg.registry.model_name, result.version
    return record_alert(cfg.database_url, kind="gate_refused", cause=f"gate_refused:{model}/{version}",
                        severity="warning", message=f"the gate refused {model} v{version}: {result.outcome}",
                        links=[Link("Report", f"{SCREENS}/report/{version}"),
                               Link("Serving", f"{SCREENS}/serving")])  # fmt: skip


def rolled_back(cfg: ClmConfig, *, version: str, deployment_id: int | None, how: str, why: str) -> int | None:
    """Traffic taken away from ``version`` automatically (``how``: ``canary`` or ``guard``); one alert per version."""
    model = cfg.registry.model_name
    where = f" (deployment #{deployment_id})" if deployment_id is not None else ""
    return record_alert(cfg.database_url, kind="rollback", cause=f"rollback:{model}/{version}", severity="critical",
                        message=f"{model} v{version} rolled back automatically by the {how}{where}: {why}",
                        links=[Link("Serving", f"{SCREENS}/serving")])  # fmt: skip


def guard_breach(cfg: ClmConfig, *, version: str | None, message: str, session: Session | None = None) -> int | None:
    """The guard found the champion in breach and did not roll it back (it only undoes promotions, or the rollback
    failed); written in ``session`` when given."""
    model = cfg.registry.model_name
    return _emit(cfg, session, kind="guard_breach", cause=f"guard_breach:{model}/{version}", severity="critical",
                 message=message, links=[Link("Serving", f"{SCREENS}/serving")])  # fmt: skip
