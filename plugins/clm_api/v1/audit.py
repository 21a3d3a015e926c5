"""The audit log and version reports: ``/clm/api/v1/audit``, ``/audit/export``, ``/audit/verify``,
``/reports/{version}``. The "Reports & audit" screen shows the same numbers from the same functions
(:mod:`clm_lib.reporting.audit`, :mod:`clm_lib.reporting.report`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import StreamingResponse

from clm_api.deps import READ, ConfigDep, Page, PageDep
from clm_api.v1.answers import unprocessable
from clm_lib.reporting import audit as audit_report
from clm_lib.reporting.audit import AuditFilter, AuditRow, FilterError, VerifyStatus
from clm_lib.reporting.report import UnknownVersion, VersionReport, build_report

router = APIRouter(tags=["audit"])

_TEXT = {"max_length": audit_report.MAX_TEXT}


def audit_filter(
    actor: Annotated[str | None, Query(description="Part of who did it (case ignored).", **_TEXT)] = None,
    action: Annotated[str | None, Query(description="Start of the action, e.g. `alias.`.", **_TEXT)] = None,
    target: Annotated[str | None, Query(description="Part of what it was done to (case ignored).", **_TEXT)] = None,
    since: Annotated[datetime | None, Query(description="From this time on (ISO 8601; UTC unless an offset).")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (ISO 8601; UTC unless an offset).")] = None,
) -> AuditFilter:
    try:
        return AuditFilter(actor=actor, action=action, target=target, since=since, until=until)
    except FilterError as exc:
        raise unprocessable("query", exc.field, str(exc)) from None


FilterDep = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("/audit", dependencies=READ, response_model=Page[AuditRow])
def audit_log(cfg: ConfigDep, flt: FilterDep, page: PageDep) -> dict[str, Any]:
    """The audit log, newest first, filtered by actor, action, target and time."""
    p = audit_report.page(cfg, flt, offset=page.offset, limit=page.limit)
    return {"items": p.items, "total": p.total, "offset": p.offset, "limit": p.limit}


@router.get(
    "/audit/export",
    dependencies=READ,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "Every matching entry."}},
)
def audit_export(
    cfg: ConfigDep,
    flt: FilterDep,
    format: Annotated[Literal["csv", "json"], Query(description="csv or json.")] = "csv",
) -> StreamingResponse:
    """Every entry matching the filters, oldest first (the chain's order), with its hashes: streamed as CSV or a
    JSON array. ``X-Total-Count`` says how many."""
    total = audit_report.count(cfg, flt)  # a database that cannot be read answers 503 before streaming starts
    rows = audit_report.export_rows(cfg, flt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body, media = (
        (audit_report.csv_lines(rows), "text/csv; charset=utf-8")
        if format == "csv"
        else (audit_report.json_chunks(rows), "application/json")
    )
    headers = {"Content-Disposition": f'attachment; filename="clm-audit-{stamp}.{format}"', "X-Total-Count": str(total)}
    return StreamingResponse(body, media_type=media, headers=headers)


@router.get("/audit/verify", dependencies=READ, response_model=VerifyStatus)
def audit_verify(cfg: ConfigDep) -> VerifyStatus:
    """Check the audit log's hash chain: ``ok``, or the first entry edited, deleted or reordered, and why. Keep
    ``head`` elsewhere to notice, later, the loss of the newest entries."""
    return audit_report.verify_status(cfg)


@router.get("/reports/{version}", dependencies=READ, response_model=VersionReport)
def version_report(
    cfg: ConfigDep, version: Annotated[str, Path(max_length=32, pattern=r"^[0-9]+$", description="Model version.")]
) -> VersionReport:
    """A version's report: evaluation (per-task scores, R, AA, BWT, forgetting), gate decision, lineage,
    deployments and audit entries. 404 names a version clm knows nothing about."""
    try:
        return build_report(cfg, version)
    except UnknownVersion as exc:
        raise HTTPException(404, str(exc)) from None
