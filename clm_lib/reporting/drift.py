"""The drift screen: what the last check decided, each detector over the recent checks, and every alert with the
training run it started.

Read-only and tolerant like the overview: no database file, an unmigrated database or no check yet are states
the page explains, never exceptions, and reading creates nothing. The checks come from
:mod:`clm_lib.reporting.drift_checks`; this module turns them into the page: per-detector series and charts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.drift import Status
from clm_lib.drift.policy import VOLUME
from clm_lib.reporting.charts import (
    ALPHA,
    Chart,
    LinearScale,
    LogPScale,
    Point,
    compact,
    p_label,
    series_chart,
    strip_chart,
)
from clm_lib.reporting.drift_checks import Check, Verdict, read_checks
from clm_lib.reporting.stores import first_line, missing_sqlite, redact_url

log = logging.getLogger(__name__)

DETECTORS = {
    "embedding_mmd": ("Embeddings (MMD)", "what prompts say and the words they use"),
    "text_stats": ("Text statistics", "lengths, word statistics, out-of-vocabulary rows"),
    "task_mix": ("Task mix", "the share of each task: prior shift, new tasks"),
    "perplexity": ("Champion perplexity", "how surprised the champion is by new prompts"),
    "concept": ("Champion accuracy", "the champion's score on newly labelled rows"),
    VOLUME: ("New data volume", "new curated rows since the last training"),
}
"""Detector -> (name on the page, what it watches). Detectors registered elsewhere show under their own name."""


@dataclass(frozen=True)
class Policy:
    """What a detector firing does, from the current config."""

    enabled: bool
    trigger: bool
    cooldown_hours: float

    @property
    def describe(self) -> str:
        if not self.enabled:
            return "off in config"
        if not self.trigger:
            return "alert only"
        return "triggers retraining" + (f" · {self.cooldown_hours:g} h cooldown" if self.cooldown_hours else "")


@dataclass(frozen=True)
class DetectorSeries:
    """One detector over the checks shown: its chart, its latest verdict, and counts."""

    detector: str
    label: str
    watches: str
    measure: Literal["p-value", "statistic"]
    policy: Policy | None
    latest: Verdict | None
    latest_at: datetime | None
    checks: int
    fired: int
    triggered: int
    unjudged: int
    """Insufficient data or error."""
    degraded: int
    chart: Chart | None

    @property
    def unit(self) -> str:
        """What the chart's y axis shows."""
        return "new rows" if self.detector == VOLUME and self.measure == "statistic" else self.measure

    @property
    def latest_value(self) -> str:
        v = self.latest
        if v is None:
            return "—"
        if self.measure == "p-value":
            return "—" if v.p_value is None else p_label(v.p_value)
        return "—" if v.statistic is None else compact(v.statistic)

    @property
    def threshold_value(self) -> str:
        t = self.latest.threshold if self.latest else None
        return "—" if t is None else p_label(t) if self.measure == "p-value" else compact(t)


@dataclass(frozen=True)
class DriftPage:
    """Everything the drift screen shows."""

    generated_at: datetime
    database_url: str
    """Credentials removed."""
    database_problem: str | None
    checks: list[Check]
    """The checks plotted, oldest first."""
    decisions: Chart | None
    """Each plotted check's decision, on the detector charts' x slots."""
    detectors: list[DetectorSeries]
    alerts: list[Check]
    """Checks in which any detector fired, newest first (also older than the plotted ones)."""
    false_alarm_bound: float

    @property
    def latest(self) -> Check | None:
        return self.checks[-1] if self.checks else None

    @property
    def retrains_requested(self) -> int:
        return sum(c.retrain_requested for c in self.checks)

    @property
    def retrains_started(self) -> int:
        return sum(c.training is not None for c in self.checks)

    @property
    def checks_with_alerts(self) -> int:
        return sum(bool(c.fired) for c in self.checks)


def build_drift(cfg: ClmConfig, *, max_checks: int = 50, max_alerts: int = 50) -> DriftPage:
    """Read the newest ``max_checks`` drift checks (and ``max_alerts`` alerts) into a :class:`DriftPage`. Never
    raises for a missing or unreadable database."""
    checks: list[Check] = []
    alerts: list[Check] = []
    problem = missing_sqlite(cfg.database_url)
    if problem is None:
        try:
            with session_scope(cfg.database_url) as session:
                checks, alerts = read_checks(session, max_checks, max_alerts)
        except SQLAlchemyError as exc:
            log.warning("drift page: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = f"cannot read clm's database: {first_line(exc)}. Run `clm init` to create or migrate it."
    else:
        problem = f"no clm database yet at {problem}; `clm init` creates it."
    return DriftPage(
        generated_at=datetime.now(UTC),
        database_url=redact_url(cfg.database_url),
        database_problem=problem,
        checks=checks,
        decisions=_decision_strip(checks) if checks else None,
        detectors=_series(cfg, checks),
        alerts=alerts,
        false_alarm_bound=cfg.drift.false_alarm_bound,
    )


# --- per-detector series ----------------------------------------------------------------------------


def _series(cfg: ClmConfig, checks: list[Check]) -> list[DetectorSeries]:
    policies = {
        name: Policy(s.enabled, s.trigger, s.cooldown_hours) for name, s in cfg.drift.detector_settings().items()
    }
    volume = cfg.drift.volume
    policies[VOLUME] = Policy(volume.enabled, True, volume.cooldown_hours)
    seen = {v.detector for c in checks for v in c.verdicts}
    names = [n for n, p in policies.items() if p.enabled or n in seen]
    names += sorted(seen - set(names))
    x_ticks = _x_ticks(checks)
    return [_one_series(name, policies.get(name), checks, x_ticks) for name in names]


def _one_series(name: str, policy: Policy | None, checks: list[Check], x_ticks) -> DetectorSeries:
    label, watches = DETECTORS.get(name, (name, ""))
    found = [(i, c, v) for i, c in enumerate(checks) for v in c.verdicts if v.detector == name]
    measure: Literal["p-value", "statistic"] = (
        "p-value" if any(v.p_value is not None for _, _, v in found) else "statistic"
    )
    chart = None
    if found:
        points = [_point(i, c, v, measure) for i, c, v in found]
        if measure == "p-value":
            scale = LogPScale.fitting([v.p_value for _, _, v in found] + [v.threshold for _, _, v in found])
        else:
            scale = LinearScale.fitting([v.statistic for _, _, v in found] + [v.threshold for _, _, v in found])
        chart = series_chart(points, len(checks), x_ticks, scale)
    latest_check, latest = (found[-1][1], found[-1][2]) if found else (None, None)
    return DetectorSeries(
        detector=name,
        label=label,
        watches=watches,
        measure=measure,
        policy=policy,
        latest=latest,
        latest_at=latest_check.checked_at if latest_check else None,
        checks=len(found),
        fired=sum(bool(v.drift) for _, _, v in found),
        triggered=sum(v.triggered for _, _, v in found),
        unjudged=sum(v.status in (Status.INSUFFICIENT, Status.ERROR) for _, _, v in found),
        degraded=sum(v.status == Status.DEGRADED for _, _, v in found),
        chart=chart,
    )


def _point(slot: int, check: Check, v: Verdict, measure: str) -> Point:
    if v.status == Status.INSUFFICIENT:
        kind = "pt-na"
    elif v.status == Status.ERROR:
        kind = "pt-error"
    else:
        kind = "pt-drift" if v.drift else "pt-ok" if v.drift is False else "pt-na"
        if v.status == Status.DEGRADED:
            kind += " pt-degraded"
    value = v.p_value if measure == "p-value" else v.statistic
    if v.status in (Status.INSUFFICIENT, Status.ERROR):
        value = None  # whatever was stored, it is no measurement to plot
    return Point(slot, value, v.threshold, f"pt {kind}", _hover(check, v, measure), halo=v.triggered)


def _hover(check: Check, v: Verdict, measure: str) -> str:
    when = f"{check.checked_at:%Y-%m-%d %H:%M} UTC" if check.checked_at else "?"
    if measure == "p-value" and v.p_value is not None:
        number = f"p = {p_label(v.p_value)}" + (f" ({ALPHA} {p_label(v.threshold)})" if v.threshold is not None else "")
    elif v.statistic is not None:
        number = f"{compact(v.statistic)}" + (f" (threshold {compact(v.threshold)})" if v.threshold else "")
    else:
        number = v.status
    verdict = "drift" if v.drift else "no drift" if v.drift is False else v.status
    tail = "requested a retraining" if v.triggered else (f"ignored: {v.suppressed_as}" if v.suppressed_as else "")
    text = " · ".join(p for p in (when, number, verdict, tail) if p)
    explanation = v.explanation if len(v.explanation) <= 240 else v.explanation[:239] + "…"
    return f"{text}\n{explanation}" if explanation else text


def _decision_strip(checks: list[Check]) -> Chart:
    points, notes = [], {}
    for slot, c in enumerate(checks):
        if c.retrain_requested:
            kind = "pt-drift" if c.training else "pt-pending"
            if c.training:
                notes[slot] = f"v{c.training.model_version}" if c.training.model_version else "run"
        elif c.fired:
            kind = "pt-quiet"
        elif c.verdicts and len(c.undecided) == len(c.verdicts):
            kind = "pt-na"
        else:
            kind = "pt-ok"
        when = f"{c.checked_at:%Y-%m-%d %H:%M} UTC · " if c.checked_at else ""
        points.append(Point(slot, None, None, f"pt {kind}", when + c.summary, halo=c.training is not None))
    return strip_chart(points, len(checks), notes)


def _x_ticks(checks: list[Check], most: int = 5) -> list[tuple[int, str]]:
    if not checks:
        return []
    n = len(checks)
    slots = sorted({round(k * (n - 1) / (most - 1)) for k in range(most)}) if n > 1 else [0]
    return [(i, f"{checks[i].checked_at:%m-%d %H:%M}" if checks[i].checked_at else "") for i in slots]
