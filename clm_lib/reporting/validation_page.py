"""The Validation screen: batches with their Great Expectations outcome, per-expectation failure counts over
recent batches, and one batch expectation by expectation (:mod:`clm_lib.reporting.validation`), each also a REST
route calling the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clm_lib.config import ClmConfig
from clm_lib.reporting.ingestion import check_kind
from clm_lib.reporting.params import PAGE_SIZE, BadFilter, NotFound, int_arg, text_arg
from clm_lib.reporting.reads import StoreProblem
from clm_lib.reporting.stores import StoreDown, redact_url
from clm_lib.reporting.validation import (
    BatchValidation,
    ExpectationStats,
    ValidationPage,
    check_outcome,
    expectation_failures,
    get_validation,
    list_validations,
)

RECENT = 50
"""Batches the failure counts cover on the screen."""


@dataclass(frozen=True)
class ValidationScreen:
    """Everything the Validation screen shows: one batch when ``batch`` is given, else the list of batches."""

    generated_at: datetime
    database_url: str
    validations: ValidationPage | None
    stats: ExpectationStats | None
    batch: BatchValidation | None
    filters: dict[str, Any]
    problems: list[StoreProblem]
    """Stores that could not be read, with since when."""
    bad_filter: BadFilter | None = None
    not_found: str | None = None

    @property
    def status(self) -> int:
        return 404 if self.not_found else 422 if self.bad_filter else 200


def _since_arg(args: Mapping[str, str]) -> datetime | None:
    raw = text_arg(args, "since")
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadFilter("since", f"{raw[:40]!r} is not a date or time (ISO 8601, e.g. 2026-12-01)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_validation(cfg: ClmConfig, args: Mapping[str, str] | None = None, batch_id: str | None = None):
    """The Validation screen for the query ``args`` (``outcome``, ``source``, ``since``, ``offset``), or the page
    of batch ``batch_id``. Never raises for a store that cannot be read (it becomes a problem on the page), a bad
    argument (named, status 422) or an unknown batch (named, status 404)."""
    args = args or {}
    now = datetime.now(UTC)
    problems: list[StoreProblem] = []
    base = {"generated_at": now, "database_url": redact_url(cfg.database_url)}
    if batch_id is not None:
        batch = not_found = None
        try:
            batch = get_validation(cfg, batch_id)
        except NotFound as exc:
            not_found = str(exc)
        except StoreDown as down:
            problems.append(StoreProblem.of(down))
        return ValidationScreen(**base, validations=None, stats=None, batch=batch, filters={}, problems=problems,
                                not_found=not_found)  # fmt: skip
    bad = None
    try:
        filters: dict[str, Any] = {
            "outcome": check_outcome(text_arg(args, "outcome")),
            "source": check_kind(text_arg(args, "source")),
            "since": _since_arg(args),
            "offset": int_arg(args, "offset", 0, 0, 10_000_000),
        }
    except BadFilter as exc:
        bad, filters = exc, {"outcome": None, "source": None, "since": None, "offset": 0}
    page = stats = None
    try:
        page = list_validations(cfg, outcome=filters["outcome"], source=filters["source"], since=filters["since"],
                                offset=filters["offset"], limit=PAGE_SIZE)  # fmt: skip
        stats = expectation_failures(cfg, batches=RECENT)
    except StoreDown as down:
        problems.append(StoreProblem.of(down))
    return ValidationScreen(**base, validations=page, stats=stats, batch=None, filters=filters, problems=problems,
                            bad_filter=bad)  # fmt: skip
