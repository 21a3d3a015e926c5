"""One drift check, end to end: run the enabled detectors, apply the policy, store every report in clm's database.

:func:`run_drift_check` is what the ``clm_drift_monitor`` DAG calls; its :class:`DriftDecision` (``to_dict()``)
is what the retrain-request Asset event carries. Every detector's result is one ``drift_reports`` row, so the
screens can plot each detector's statistic, threshold and alerts over time, and :func:`link_training_run` ties
the rows that requested a retraining to the training run they started.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport
from clm_lib.drift.base import DriftContext, DriftResult, get_detector, jsonable
from clm_lib.drift.config import DriftConfig
from clm_lib.drift.policy import DriftDecision, decide
from clm_lib.drift.window import TextWindow

log = logging.getLogger(__name__)

WindowLike = TextWindow | pa.Table | Sequence[Mapping[str, Any]] | None


def run_detectors(
    reference: WindowLike,
    current: WindowLike,
    settings: DriftConfig,
    context: DriftContext | None = None,
    detectors: Sequence[str] | None = None,
) -> list[DriftResult]:
    """The results of the enabled detectors (or exactly ``detectors``), in config order. Never raises on data."""
    ref, cur = TextWindow.coerce(reference), TextWindow.coerce(current)
    sections = settings.detector_settings()
    names = list(detectors) if detectors is not None else [n for n, s in sections.items() if s.enabled]
    results = []
    for name in names:
        cls = get_detector(name)
        detector = cls(sections.get(name), seed=settings.seed)
        result = detector.check(ref, cur, context)
        log.info("drift %s: %s (%s, %.2fs)", name, result.explanation, result.status, result.duration_s)
        results.append(result)
    return results


def last_triggered(session: Session) -> dict[str, datetime]:
    """Detector -> when it last requested a retraining (the start of its cooldown)."""
    rows = session.execute(
        select(DriftReport.detector, func.max(DriftReport.created_at))
        .where(DriftReport.triggered.is_(True))
        .group_by(DriftReport.detector)
    )
    return {detector: at for detector, at in rows}


def store_decision(
    session: Session,
    decision: DriftDecision,
    *,
    reference_version: int | None = None,
    current_version: int | None = None,
    champion_version: str | None = None,
) -> list[DriftReport]:
    """One ``drift_reports`` row per result of ``decision``, plus an audit entry when it requests a retraining."""
    reasons = {r.detector for r in decision.reasons}
    rows = []
    for res in decision.results:
        d = res.to_dict()
        rows.append(
            DriftReport(
                check_id=decision.check_id,
                detector=res.detector,
                status=d["status"],
                drift=res.drift,
                statistic=d["statistic"],
                p_value=d["p_value"],
                threshold=d["threshold"],
                n_reference=int(res.n_reference),
                n_current=int(res.n_current),
                explanation=res.explanation,
                details=d["details"],
                retrain_requested=decision.retrain,
                triggered=res.detector in reasons,
                suppressed_reason=decision.suppressed.get(res.detector),
                reference_version=reference_version,
                current_version=current_version,
                champion_version=champion_version,
                duration_s=float(res.duration_s),
                created_at=decision.checked_at,
            )
        )
    session.add_all(rows)
    if decision.retrain:
        audit.record(
            session,
            action="drift.retrain_requested",
            target=f"drift_check/{decision.check_id}",
            reason=decision.summary,
            details=jsonable({"reasons": [r.to_dict() for r in decision.reasons], "new_rows": decision.new_rows,
                              "curated_version": current_version}),
        )
    session.flush()
    return rows


def run_drift_check(
    cfg: ClmConfig,
    *,
    reference: WindowLike,
    current: WindowLike,
    new_rows: int | None = None,
    context: DriftContext | None = None,
    settings: DriftConfig | None = None,
    detectors: Sequence[str] | None = None,
    reference_version: int | None = None,
    current_version: int | None = None,
    now: datetime | None = None,
    store: bool = True,
    first_training: bool = False,
) -> DriftDecision:
    """Run the drift detectors on ``reference`` vs ``current``, decide, and store the reports.

    ``reference``/``current``: Arrow tables with a ``prompt`` column (``task``, ``response``, ``id`` used when
    present), lists of record dicts, or :class:`TextWindow`. ``new_rows`` feeds the volume trigger (None: unknown,
    reported as insufficient data). ``context`` carries the champion for the model-based detectors (see
    :func:`clm_lib.drift.sources.champion_context`). ``settings`` defaults to ``cfg.drift``. With ``store``, the
    cooldowns are read from and the reports written to ``cfg.database_url`` in one transaction.
    ``first_training``: no model was trained yet (see :func:`clm_lib.drift.policy.decide`).
    """
    settings = settings if settings is not None else cfg.drift
    context = context or DriftContext()
    if context.cache_dir is None:
        context = replace(context, cache_dir=cfg.home / "cache" / "drift")
    results = run_detectors(reference, current, settings, context, detectors)
    if not store:
        return decide(results, settings, new_rows=new_rows, now=now, first_training=first_training)
    with session_scope(cfg.database_url) as session:
        decision = decide(
            results,
            settings,
            new_rows=new_rows,
            last_triggered=last_triggered(session),
            now=now,
            first_training=first_training,
        )
        store_decision(
            session,
            decision,
            reference_version=reference_version,
            current_version=current_version,
            champion_version=context.champion_version,
        )
    log.info("drift check %s: %s", decision.check_id, decision.summary)
    return decision


def check_lake(cfg: ClmConfig, *, now: datetime | None = None) -> DriftDecision:
    """The scheduled check: what the champion was trained on against every curated row since, with the champion
    loaded for the model-based detectors. What ``clm_drift_monitor`` and ``clm drift check`` run."""
    from clm_lib.drift.sources import champion_context, load_windows

    windows = load_windows(cfg)
    log.info(
        "drift windows: reference v%s (%d rows), current up to v%s (%d rows, %d new training rows)",
        windows.reference_version, windows.reference.num_rows, windows.current_version, windows.current.num_rows,
        windows.new_rows,
    )
    return run_drift_check(
        cfg,
        reference=windows.reference,
        current=windows.current,
        new_rows=windows.new_rows,
        context=champion_context(cfg),
        reference_version=windows.reference_version,
        current_version=windows.current_version,
        now=now,
        first_training=windows.reference_version is None,
    )


def link_training_run(cfg: ClmConfig, check_id: str, training_run_id: str) -> int:
    """Record that ``training_run_id`` was started by drift check ``check_id``; returns the rows linked."""
    with session_scope(cfg.database_url) as session:
        result = session.execute(
            update(DriftReport)
            .where(DriftReport.check_id == check_id, DriftReport.triggered.is_(True))
            .values(training_run_id=training_run_id)
        )
        return int(result.rowcount or 0)


def pending_requests(cfg: ClmConfig, since: datetime) -> list[dict[str, Any]]:
    """Retrain requests newer than ``since`` that no training run took up yet, oldest first: what
    ``RetrainTriggerSensor`` waits for. One dict per check: ``check_id``, ``created_at`` (ISO), ``reasons``."""
    bound = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    with session_scope(cfg.database_url) as session:
        if session.get_bind().dialect.name == "sqlite":  # stores clm's UTC timestamps without a zone
            bound = bound.replace(tzinfo=None)
        rows = session.scalars(
            select(DriftReport)
            .where(
                DriftReport.triggered.is_(True),
                DriftReport.training_run_id.is_(None),
                DriftReport.created_at > bound,
            )
            .order_by(DriftReport.created_at, DriftReport.id)
        ).all()
        checks: dict[str, dict[str, Any]] = {}
        for r in rows:
            check = checks.setdefault(
                r.check_id, {"check_id": r.check_id, "created_at": _iso(r.created_at), "reasons": []}
            )
            check["reasons"].append({"detector": r.detector, "explanation": r.explanation})
        return list(checks.values())


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def reports(
    session: Session, *, detector: str | None = None, since: datetime | None = None, limit: int = 1000
) -> list[DriftReport]:
    """Stored reports, newest first: a detector's time series for the screens."""
    stmt = select(DriftReport).order_by(DriftReport.created_at.desc(), DriftReport.id.desc()).limit(limit)
    if detector:
        stmt = stmt.where(DriftReport.detector == detector)
    if since:
        stmt = stmt.where(DriftReport.created_at >= since)
    return list(session.scalars(stmt))
