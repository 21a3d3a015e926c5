"""The retraining policy: which detector results (and how much new data) request a retraining, and why.

A retraining is requested when at least one of these holds:

- a detector with ``trigger: true`` fired (``drift`` is True) and is not in its cooldown, i.e. it did not
  trigger a retraining in the last ``cooldown_hours`` (a task-mix firing that shows a task never seen before
  overrides the cooldown: the champion cannot serve that task at all);
- the volume trigger: at least ``volume.min_new_rows`` new curated rows arrived since the last training (with its
  own cooldown).

Everything else is recorded with the reason it did not count: alert-only detectors, cooldowns, insufficient
data, degraded detectors (whose verdict still counts), errors. The policy is a pure function of the results and
the last trigger times, so it is tested without a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clm_lib.drift import DriftResult, Status
from clm_lib.drift.config import DriftConfig

VOLUME = "volume"


@dataclass(frozen=True)
class Reason:
    """One cause of a retraining request."""

    detector: str
    explanation: str

    def to_dict(self) -> dict[str, str]:
        return {"detector": self.detector, "explanation": self.explanation}


@dataclass
class DriftDecision:
    """The outcome of one drift check: whether to retrain, which results fired and why, and everything measured."""

    retrain: bool
    reasons: list[Reason]
    results: list[DriftResult]
    suppressed: dict[str, str] = field(default_factory=dict)
    """Detector -> why its firing requested nothing (cooldown, alert only)."""
    new_rows: int | None = None
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    check_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Groups this check's rows in the ``drift_reports`` table."""

    @property
    def fired(self) -> list[str]:
        """Detectors whose result is drift, triggering or not."""
        return [r.detector for r in self.results if r.drift]

    @property
    def summary(self) -> str:
        if self.retrain:
            return "retrain: " + "; ".join(f"{r.detector}: {r.explanation}" for r in self.reasons)
        if self.suppressed:
            return "no retraining: " + "; ".join(f"{d} {why}" for d, why in self.suppressed.items())
        unsure = [r.detector for r in self.results if r.drift is None]
        tail = f" (could not judge: {', '.join(unsure)})" if unsure else ""
        return "no retraining: no detector fired" + tail

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what goes into the retrain-request Asset event and the training run's trigger."""
        return {
            "check_id": self.check_id,
            "retrain": self.retrain,
            "reasons": [r.to_dict() for r in self.reasons],
            "fired": self.fired,
            "suppressed": dict(self.suppressed),
            "new_rows": self.new_rows,
            "checked_at": self.checked_at.isoformat(),
            "summary": self.summary,
            "results": [r.to_dict() for r in self.results],
        }


def volume_result(new_rows: int | None, min_new_rows: int, *, first_training: bool = False) -> DriftResult:
    """The volume trigger as a result, so it is stored and plotted like any detector. ``first_training``: no
    model was trained yet, ``min_new_rows`` is then the threshold of the initial training."""
    if new_rows is None:
        return DriftResult(VOLUME, Status.INSUFFICIENT, None, "the number of new curated rows is unknown")
    fired = new_rows >= min_new_rows
    verb = "reached" if fired else "below"
    since, trigger = (
        ("and no model trained yet", "initial-training threshold")
        if first_training
        else ("since the last training", "volume trigger")
    )
    return DriftResult(
        VOLUME,
        Status.OK,
        fired,
        f"{new_rows} new curated rows {since}, {verb} the {trigger} of {min_new_rows}",
        statistic=float(new_rows),
        threshold=float(min_new_rows),
        n_current=new_rows,
    )


def volume_rule(new_rows: int | None, settings: DriftConfig, *, first_training: bool = False) -> DriftResult | None:
    """The one answer to "is there enough new data to train": ``volume.initial_rows`` before the first training
    (even with the volume trigger off, or nothing could ever train), ``volume.min_new_rows`` after it, ``None``
    when the volume trigger is off. Drift checks and manual training runs both ask it
    (:func:`clm_lib.training.update.plan_update`)."""
    if first_training:
        return volume_result(new_rows, settings.volume.initial_rows, first_training=True)
    if settings.volume.enabled:
        return volume_result(new_rows, settings.volume.min_new_rows)
    return None


def _new_tasks(res: DriftResult, conf: Any) -> bool:
    """The result saw tasks the reference never had, and its settings let that override a cooldown."""
    if not getattr(conf, "new_task_overrides_cooldown", False):
        return False
    details = res.details or {}
    return details.get("column") == "task" and bool(details.get("new_categories"))


def _in_cooldown(last: datetime | None, hours: float, now: datetime) -> datetime | None:
    if last is None or hours <= 0:
        return None
    if last.tzinfo is None:  # SQLite hands back naive datetimes; clm writes UTC
        last = last.replace(tzinfo=UTC)
    until = last + timedelta(hours=hours)
    return until if now < until else None


def decide(
    results: list[DriftResult],
    settings: DriftConfig,
    *,
    new_rows: int | None = None,
    last_triggered: Mapping[str, datetime] | None = None,
    now: datetime | None = None,
    first_training: bool = False,
) -> DriftDecision:
    """Combine detector results (and the volume trigger) into one decision. ``last_triggered``: detector -> the
    last time it triggered a retraining (from :func:`clm_lib.drift.monitor.last_triggered`). ``first_training``:
    no model exists yet, so there is nothing to drift from and ``volume.initial_rows`` new rows start one (this
    applies even with the volume trigger off: without it nothing could ever train)."""
    now = now or datetime.now(UTC)
    last_triggered = last_triggered or {}
    results = list(results)
    volume = volume_rule(new_rows, settings, first_training=first_training)
    if volume is not None:
        results.append(volume)
    by_name = settings.detector_settings()
    reasons: list[Reason] = []
    suppressed: dict[str, str] = {}
    for res in results:
        if not res.drift:
            continue
        conf = by_name.get(res.detector)
        if res.detector == VOLUME:
            trigger, cooldown = True, settings.volume.cooldown_hours
        else:
            trigger, cooldown = (conf.trigger, conf.cooldown_hours) if conf else (True, 0.0)
        if not trigger:
            suppressed[res.detector] = "fired but is set to alert only (trigger: false)"
            continue
        until = _in_cooldown(last_triggered.get(res.detector), cooldown, now)
        if until is not None and _new_tasks(res, conf):
            # A task the champion never saw is not the same drift firing again: it has nothing to serve it with.
            reasons.append(Reason(res.detector, f"{res.explanation} (a new task overrides the cooldown)"))
            continue
        if until is not None:
            suppressed[res.detector] = (
                f"fired within its {cooldown:g} h cooldown (it last triggered a retraining at "
                f"{last_triggered[res.detector]:%Y-%m-%d %H:%M}; quiet until {until:%Y-%m-%d %H:%M} UTC)"
            )
            continue
        reasons.append(Reason(res.detector, res.explanation))
    return DriftDecision(
        retrain=bool(reasons), reasons=reasons, results=results, suppressed=suppressed, new_rows=new_rows,
        checked_at=now,
    )
