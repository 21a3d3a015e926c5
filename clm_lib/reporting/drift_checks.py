"""Drift checks as stored: one check is the ``drift_reports`` rows sharing a ``check_id`` (one per detector, the
volume trigger included), all stamped with the check's time, and the training run it started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field, computed_field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from clm_lib.db.models import DriftReport, TrainingRun
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import utc


@dataclass(frozen=True)
class TrainingLink:
    """The training run a check started."""

    training_run_id: str
    status: str | None
    """None: clm's database has no such run any more."""
    model_version: str | None
    airflow_dag_id: str | None
    airflow_run_id: str | None


@dataclass(frozen=True)
class Verdict:
    """One detector's result in one check, and what the policy made of it."""

    __pydantic_config__ = DOCUMENTED

    detector: str
    status: str
    drift: bool | None
    statistic: float | None
    p_value: float | None
    threshold: float | None
    n_reference: int
    n_current: int
    explanation: str
    triggered: bool
    suppressed_reason: str | None

    @property
    def suppressed_as(self) -> str | None:
        """The policy's reason to ignore a firing, in two words (the full text is ``suppressed_reason``)."""
        if not self.suppressed_reason:
            return None
        text = self.suppressed_reason.lower()
        return "cooldown" if "cooldown" in text else "alert only" if "alert only" in text else "suppressed"


@dataclass(frozen=True)
class Check:
    """One drift check: every detector's verdict, the decision, the Delta versions compared."""

    __pydantic_config__ = DOCUMENTED

    check_id: str
    checked_at: datetime | None
    retrain_requested: bool
    verdicts: list[Verdict]
    reference_version: int | None
    current_version: int | None
    champion_version: str | None
    training: Annotated[TrainingLink | None, Field(exclude=True)]
    """The training run the check started. Left out of REST answers: they reach a check from that run (``GET
    /v1/training/runs/{id}``), and ``summary`` names it."""

    @property
    def fired(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.drift]

    @property
    def reasons(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.triggered]

    @property
    def suppressed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.suppressed_reason]

    @property
    def undecided(self) -> list[Verdict]:
        """Detectors that could not judge (insufficient data, an error): never counted as "no drift"."""
        return [v for v in self.verdicts if v.drift is None]

    @computed_field
    @property
    def summary(self) -> str:
        """The decision in words: which detectors requested retraining (and the run that followed), or why not."""
        if self.retrain_requested:
            started = f" → {self.training.training_run_id}" if self.training else ", not taken up yet"
            version = f" (v{self.training.model_version})" if self.training and self.training.model_version else ""
            return f"retrain requested by {', '.join(v.detector for v in self.reasons)}{started}{version}"
        if self.suppressed:
            return "no retraining: " + ", ".join(f"{v.detector} {v.suppressed_as}" for v in self.suppressed)
        unsure = f" (could not judge: {', '.join(v.detector for v in self.undecided)})" if self.undecided else ""
        return "no retraining: no detector fired" + unsure


def read_checks(session: Session, max_checks: int, max_alerts: int) -> tuple[list[Check], list[Check]]:
    """The newest ``max_checks`` checks (oldest first, as plotted) and the newest ``max_alerts`` checks in which
    a detector fired (newest first; they may be older than the plotted ones)."""
    at = func.max(DriftReport.created_at).label("at")
    newest = select(DriftReport.check_id, at).group_by(DriftReport.check_id).order_by(at.desc(), DriftReport.check_id)
    plotted = [c for c, _ in session.execute(newest.limit(max_checks))]
    alerted = [c for c, _ in session.execute(newest.where(DriftReport.drift.is_(True)).limit(max_alerts))]
    wanted = list(dict.fromkeys(plotted + alerted))
    if not wanted:
        return [], []
    rows: dict[str, list[DriftReport]] = {}
    # ``details`` (per-feature numbers, the largest column) is not shown on this page.
    stmt = select(DriftReport).options(defer(DriftReport.details)).where(DriftReport.check_id.in_(wanted))
    for row in session.scalars(stmt.order_by(DriftReport.id)):
        rows.setdefault(row.check_id, []).append(row)
    run_ids = {r.training_run_id for rs in rows.values() for r in rs if r.training_run_id}
    runs = {r.id: r for r in session.scalars(select(TrainingRun).where(TrainingRun.id.in_(run_ids)))} if run_ids else {}
    checks = {check_id: _check(rs, runs) for check_id, rs in rows.items()}
    return [checks[c] for c in reversed(plotted)], [checks[c] for c in alerted]


def checks_by_id(session: Session, check_ids: list[str], training_run_id: str | None = None) -> list[Check]:
    """The checks named (and, with ``training_run_id``, those linked to that run), oldest first."""
    where = DriftReport.check_id.in_(list(check_ids)) if check_ids else None
    if training_run_id:
        linked = DriftReport.training_run_id == training_run_id
        where = linked if where is None else where | linked
    if where is None:
        return []
    ids = list(dict.fromkeys(session.scalars(select(DriftReport.check_id).where(where))))
    rows: dict[str, list[DriftReport]] = {}
    stmt = select(DriftReport).options(defer(DriftReport.details)).where(DriftReport.check_id.in_(ids))
    for row in session.scalars(stmt.order_by(DriftReport.id)):
        rows.setdefault(row.check_id, []).append(row)
    run_ids = {r.training_run_id for rs in rows.values() for r in rs if r.training_run_id}
    runs = {r.id: r for r in session.scalars(select(TrainingRun).where(TrainingRun.id.in_(run_ids)))} if run_ids else {}
    found = [_check(rs, runs) for rs in rows.values()]
    return sorted(found, key=lambda c: (c.checked_at is None, c.checked_at or 0, c.check_id))


def _check(rows: list[DriftReport], runs: dict[str, TrainingRun]) -> Check:
    first = rows[0]
    run_id = next((r.training_run_id for r in rows if r.training_run_id), None)
    run = runs.get(run_id) if run_id else None
    training = None
    if run_id:
        training = TrainingLink(
            training_run_id=run_id,
            status=run.status if run else None,
            model_version=run.model_version if run else None,
            airflow_dag_id=run.airflow_dag_id if run else None,
            airflow_run_id=run.airflow_run_id if run else None,
        )
    return Check(
        check_id=first.check_id,
        checked_at=utc(max(r.created_at for r in rows)),
        retrain_requested=any(r.retrain_requested for r in rows),
        verdicts=[_verdict(r) for r in rows],
        reference_version=first.reference_version,
        current_version=first.current_version,
        champion_version=first.champion_version,
        training=training,
    )


def _verdict(r: DriftReport) -> Verdict:
    return Verdict(
        detector=r.detector,
        status=r.status,
        drift=r.drift,
        statistic=r.statistic,
        p_value=r.p_value,
        threshold=r.threshold,
        n_reference=r.n_reference or 0,
        n_current=r.n_current or 0,
        explanation=r.explanation or "",
        triggered=bool(r.triggered),
        suppressed_reason=r.suppressed_reason,
    )
