"""The Data ingestion screen: the summary (:mod:`clm_lib.reporting.ingestion`), its hourly charts
(:mod:`clm_lib.reporting.volume`), one page of batches and one of the quarantine browser
(:mod:`clm_lib.reporting.quarantine`), each also a REST route calling the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clm_lib.config import ClmConfig
from clm_lib.reporting.ingestion import (
    MAX_HOURS,
    Batch,
    IngestionSummary,
    check_kind,
    check_status,
    ingestion_summary,
    list_batches,
)
from clm_lib.reporting.params import PAGE_SIZE, BadFilter, int_arg, text_arg
from clm_lib.reporting.quarantine import QuarantinePage, quarantine_records
from clm_lib.reporting.reads import StoreProblem
from clm_lib.reporting.stores import StoreDown, redact_url
from clm_lib.reporting.volume import BarChart, hourly_chart


@dataclass(frozen=True)
class IngestionPage:
    """Everything the Data ingestion screen shows; each part is also a REST route (same function)."""

    generated_at: datetime
    database_url: str
    lake_uri: str
    summary: IngestionSummary | None
    rows_chart: BarChart | None
    bytes_chart: BarChart | None
    batches: list[Batch]
    batches_total: int
    batch_filters: dict[str, Any]
    quarantine: QuarantinePage | None
    problems: list[StoreProblem]
    """Stores that could not be read (each once), with since when."""
    bad_filter: BadFilter | None = None

    @property
    def status(self) -> int:
        return 422 if self.bad_filter else 200


def build_ingestion(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> IngestionPage:
    """The Data ingestion screen for the query ``args`` (``hours``; batches: ``bsource``, ``bstatus``,
    ``boffset``; quarantine: ``reason``, ``task``, ``batch``, ``source``, ``offset``). Never raises for a store
    that cannot be read (it becomes a problem on the page) nor for a bad argument (the page names it, status 422)."""
    args = args or {}
    problems: list[StoreProblem] = []
    bad = None
    try:
        hours = int_arg(args, "hours", 48, 1, MAX_HOURS)
        b_source = check_kind(text_arg(args, "bsource"), "bsource")
        b_status = check_status(text_arg(args, "bstatus"), "bstatus")
        b_offset = int_arg(args, "boffset", 0, 0, 10_000_000)
        q = {k: text_arg(args, k) for k in ("reason", "task", "batch", "source")}
        check_kind(q["source"])
        q_offset = int_arg(args, "offset", 0, 0, 10_000_000)
    except BadFilter as exc:
        bad, hours, b_source, b_status, b_offset, q, q_offset = exc, 48, None, None, 0, {}, 0
    summary = batches = quarantine = None
    total = 0
    try:
        summary = ingestion_summary(cfg, hours=hours)
        problems += summary.problems
    except StoreDown as down:
        problems.append(StoreProblem.of(down))
    try:
        batches, total = list_batches(cfg, source=b_source, status=b_status, offset=b_offset, limit=PAGE_SIZE)
    except StoreDown as down:
        problems.append(StoreProblem.of(down))
    try:
        quarantine = quarantine_records(cfg, **q, offset=q_offset, limit=PAGE_SIZE)
    except StoreDown as down:
        problems.append(StoreProblem.of(down))
    unique = {p.store: p for p in problems}
    return IngestionPage(
        generated_at=datetime.now(UTC), database_url=redact_url(cfg.database_url), lake_uri=redact_url(cfg.lake_uri),
        summary=summary, rows_chart=hourly_chart(summary.hourly, "rows") if summary else None,
        bytes_chart=hourly_chart(summary.hourly, "bytes") if summary else None, batches=batches or [],
        batches_total=total, batch_filters={"bsource": b_source, "bstatus": b_status, "boffset": b_offset},
        quarantine=quarantine, problems=list(unique.values()), bad_filter=bad,
    )  # fmt: skip
