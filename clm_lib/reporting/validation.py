"""Great Expectations verdicts per batch, as clm's database stores them (``validation_results``, written by
:mod:`clm_lib.data.ingest` from :class:`clm_lib.validation.suite.SuiteResult`): one batch expectation by
expectation with a bounded sample of its failing values, the batches with their outcome, and how often each
expectation failed over recent batches.

Failing values are records' text, untrusted: escape them wherever they are shown. A result stored before the
values were kept has none (``failing_values`` empty); the counts are there either way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from clm_lib.config import ClmConfig
from clm_lib.db.models import IngestionBatch, ValidationResult
from clm_lib.reporting.ingestion import _kind_clause, _since, check_kind, source_kind
from clm_lib.reporting.params import BadFilter, NotFound
from clm_lib.reporting.reads import as_datetime, database
from clm_lib.reporting.schema import DOCUMENTED

OUTCOMES = ("success", "failure")
"""A batch's validation outcome: every expectation held, or at least one failed."""
MAX_RECENT = 500
"""Most recent batches :func:`expectation_failures` counts over."""


def check_outcome(value: str | None, name: str = "outcome") -> str | None:
    if value is not None and value not in OUTCOMES:
        raise BadFilter(name, f"{value[:100]!r} is not an outcome (one of: {', '.join(OUTCOMES)})")
    return value


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the suite on one batch (failing values are untrusted text: escape them)."""

    __pydantic_config__ = DOCUMENTED

    type: str
    """The GX expectation type, e.g. ``expect_column_values_to_be_in_set``."""
    column: str | None
    reason: str
    """The quarantine code a row failing it gets (the suite's ``meta.reason``)."""
    detail: str
    """The expectation in words, bounds filled in."""
    success: bool
    element_count: int | None
    """Rows it looked at."""
    unexpected_count: int
    """Rows that failed it."""
    unexpected_percent: float | None
    """Failing rows as a percentage of the non-null rows GX checked."""
    observed_value: Any
    """What GX measured, for an expectation on the column as a whole (None for row-by-row ones)."""
    kwargs: dict[str, Any]
    """The expectation's arguments, suite parameters filled in from the config."""
    failing_values: list[str | None]
    """GX's sample of the failing values (at most 20, each cut at 200 characters; None: a missing value)."""
    values_cut: bool
    """At least one failing value was longer than 200 characters and is shown cut."""


@dataclass(frozen=True)
class BatchOutcome:
    """One batch's validation: which suite, whether it held, rows validated and rows failing."""

    __pydantic_config__ = DOCUMENTED

    batch_id: str
    source: str
    kind: str
    """files, feedback, webhook or kafka."""
    suite: str
    success: bool
    evaluated: int
    """Rows validated (a batch's duplicates and unreadable lines are not)."""
    failed: int
    """Rows that failed at least one expectation (quarantined)."""
    failed_expectations: list[str]
    """Reason codes of the expectations that failed, in suite order."""
    validated_at: datetime | None


@dataclass(frozen=True)
class BatchValidation:
    """One batch's validation expectation by expectation."""

    __pydantic_config__ = DOCUMENTED

    batch: BatchOutcome
    expectations: list[ExpectationOutcome]


@dataclass(frozen=True)
class ValidationPage:
    """Batches with their validation outcome, newest first: ``items`` from ``offset``, at most ``limit`` of
    ``total``."""

    __pydantic_config__ = DOCUMENTED

    items: list[BatchOutcome]
    total: int
    offset: int
    limit: int
    filters: dict[str, str]
    """The filters applied (those given)."""


@dataclass(frozen=True)
class ExpectationFailures:
    """How often one expectation failed over the batches counted."""

    __pydantic_config__ = DOCUMENTED

    reason: str
    type: str
    column: str | None
    batches: int
    """Batches it was evaluated on."""
    failed_batches: int
    """Batches where it failed."""
    unexpected_rows: int
    """Rows that failed it, over those batches."""


@dataclass(frozen=True)
class ExpectationStats:
    """Per-expectation failure counts over the most recent validated batches."""

    __pydantic_config__ = DOCUMENTED

    batches: int
    """Validated batches counted (the most recent ones, at most the number asked for)."""
    items: list[ExpectationFailures]
    """One per expectation, most failing batches first."""


def _expectation(raw: dict[str, Any]) -> ExpectationOutcome:
    values = raw.get("failing_values") or []
    return ExpectationOutcome(
        type=str(raw.get("type") or ""), column=raw.get("column"), reason=str(raw.get("reason") or ""),
        detail=str(raw.get("detail") or raw.get("reason") or ""), success=bool(raw.get("success")),
        element_count=raw.get("element_count"), unexpected_count=int(raw.get("unexpected_count") or 0),
        unexpected_percent=raw.get("unexpected_percent"), observed_value=raw.get("observed_value"),
        kwargs=raw.get("kwargs") if isinstance(raw.get("kwargs"), dict) else {},
        failing_values=[None if v is None else str(v) for v in values],
        values_cut=bool(raw.get("values_cut")),
    )  # fmt: skip


def _outcome(result: ValidationResult, source: str | None) -> BatchOutcome:
    failed = [str(e.get("reason")) for e in result.expectations or [] if isinstance(e, dict) and not e.get("success")]
    return BatchOutcome(
        batch_id=result.batch_id, source=source or "", kind=source_kind(source), suite=result.suite,
        success=bool(result.success), evaluated=result.evaluated, failed=result.failed,
        failed_expectations=failed, validated_at=as_datetime(result.created_at),
    )  # fmt: skip


def _latest():
    """Each batch's newest validation result (a batch is validated once; a retried one keeps the last word)."""
    newest = select(func.max(ValidationResult.id)).group_by(ValidationResult.batch_id)
    return (
        select(ValidationResult, IngestionBatch.source)
        .join(IngestionBatch, IngestionBatch.id == ValidationResult.batch_id)
        .where(ValidationResult.id.in_(newest))
    )


def list_validations(
    cfg: ClmConfig,
    *,
    outcome: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> ValidationPage:
    """Validated batches, newest first (``outcome``: success or failure; ``source``: one of
    :data:`~clm_lib.reporting.ingestion.SOURCE_KINDS`; ``since``: validated at or after), one page, and how many
    match. Raises :class:`~clm_lib.reporting.stores.StoreDown` when clm's database cannot be read."""
    check_outcome(outcome)
    check_kind(source)
    since = _since(since)
    filters = {k: v for k, v in {"outcome": outcome, "source": source}.items() if v}
    if since is not None:
        filters["since"] = since.isoformat()
    stmt = _latest()
    if outcome is not None:
        stmt = stmt.where(ValidationResult.success.is_(outcome == "success"))
    if source is not None:
        stmt = stmt.where(_kind_clause(source))
    if since is not None:
        stmt = stmt.where(ValidationResult.created_at >= since)
    with database(cfg) as s:
        if s is None:
            return ValidationPage([], 0, offset, limit, filters)
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        newest = stmt.order_by(ValidationResult.created_at.desc(), ValidationResult.id.desc())
        rows = s.execute(newest.offset(offset).limit(limit)).all()
        return ValidationPage([_outcome(r, src) for r, src in rows], total, offset, limit, filters)


def get_validation(cfg: ClmConfig, batch_id: str) -> BatchValidation:
    """One batch's validation expectation by expectation, or :class:`NotFound` naming the batch (unknown, or
    never validated: a file refused as a whole)."""
    with database(cfg) as s:
        row = None
        if s is not None and len(batch_id) <= 64:
            row = s.execute(_latest().where(ValidationResult.batch_id == batch_id)).first()
            if row is None and s.get(IngestionBatch, batch_id) is not None:
                raise NotFound(f"ingestion batch {batch_id!r} was not validated (no record of it could be read)")
        if row is None:
            raise NotFound(f"no ingestion batch {batch_id[:100]!r}")
        result, source = row
        expectations = [_expectation(e) for e in result.expectations or [] if isinstance(e, dict)]
        return BatchValidation(_outcome(result, source), expectations)


def expectation_failures(cfg: ClmConfig, *, batches: int = 50) -> ExpectationStats:
    """How often each expectation failed over the ``batches`` most recent validated batches (at most
    :data:`MAX_RECENT`), most failing first."""
    if not 1 <= batches <= MAX_RECENT:
        raise BadFilter("batches", f"{batches} is not a whole number from 1 to {MAX_RECENT}")
    with database(cfg) as s:
        if s is None:
            return ExpectationStats(0, [])
        stmt = _latest().order_by(ValidationResult.created_at.desc(), ValidationResult.id.desc()).limit(batches)
        results = [r for r, _ in s.execute(stmt).all()]
    seen: dict[str, ExpectationFailures] = {}
    evaluated: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    for result in results:
        for raw in result.expectations or []:
            if not isinstance(raw, dict):
                continue
            reason = str(raw.get("reason") or "")
            seen.setdefault(reason, ExpectationFailures(reason, str(raw.get("type") or ""), raw.get("column"), 0, 0, 0))
            evaluated[reason] += 1
            failed[reason] += not raw.get("success")
            rows[reason] += int(raw.get("unexpected_count") or 0)
    items = [ExpectationFailures(e.reason, e.type, e.column, evaluated[r], failed[r], rows[r]) for r, e in seen.items()]
    items.sort(key=lambda e: (-e.failed_batches, -e.unexpected_rows))
    return ExpectationStats(len(results), items)
