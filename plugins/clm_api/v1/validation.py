"""Great Expectations results per batch: ``/clm/api/v1/validation...``.

The same functions as the Validation screen (:mod:`clm_lib.reporting.validation`), whose dataclasses are the
response models. Unknown or never-validated batch: 404 naming it. A filter that cannot be applied: 422 naming the
field. clm's database unreadable: 503 naming it and since when. Failing values are records' text, returned as data
(at most 20 per expectation, each cut at 200 characters): escape them wherever they are shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from clm_api.deps import READ, ConfigDep, PageDep
from clm_api.v1.answers import answer
from clm_lib.reporting import validation
from clm_lib.reporting.validation import BatchValidation, ExpectationStats, ValidationPage

router = APIRouter(tags=["validation"], dependencies=READ)

Outcome = Literal["success", "failure"]
SourceKind = Literal["files", "feedback", "webhook", "kafka"]


@router.get("/validation")
def validations(
    cfg: ConfigDep,
    page: PageDep,
    outcome: Annotated[Outcome | None, Query(description="Every expectation held (success) or not (failure).")] = None,
    source: Annotated[SourceKind | None, Query(description="Where the batches came from.")] = None,
    since: Annotated[datetime | None, Query(description="Validated at or after (ISO 8601; UTC if no zone).")] = None,
) -> ValidationPage:
    """Validated batches with their outcome, newest first."""
    return answer(lambda: validation.list_validations(cfg, outcome=outcome, source=source, since=since,
                                                      offset=page.offset, limit=page.limit))  # fmt: skip


@router.get("/validation/expectations")
def expectations(
    cfg: ConfigDep,
    batches: Annotated[
        int, Query(ge=1, le=validation.MAX_RECENT, description="How many of the most recent batches to count.")
    ] = 50,
) -> ExpectationStats:
    """How often each expectation failed over the most recent validated batches, most failing first."""
    return answer(lambda: validation.expectation_failures(cfg, batches=batches))


@router.get("/validation/{batch_id}")
def batch(cfg: ConfigDep, batch_id: Annotated[str, Path(max_length=64)]) -> BatchValidation:
    """One batch's validation, expectation by expectation, with a sample of the failing values."""
    return answer(lambda: validation.get_validation(cfg, batch_id))
