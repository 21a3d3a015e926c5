"""The Performance & drift screen's numbers: ``/clm/api/v1/performance/matrix``, ``/serving`` and ``/drift``.

The same functions as the screen (:mod:`clm_lib.reporting.performance`), whose dataclasses are the response models.
A filter that cannot be applied is a 422 naming it; clm's database that cannot be read is a 503 naming it and since
when (the app's handler of ``StoreDown``). Every answer is bounded: at most 200 versions, a window of at most 400
days in at most 120 steps per version, at most 5,000 drift verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Query

from clm_api.deps import READ, ConfigDep
from clm_lib.reporting import performance as perf
from clm_lib.reporting.stores import reading

router = APIRouter(tags=["performance"], dependencies=READ)

T = TypeVar("T")
DEFAULT_WINDOW = timedelta(hours=24)
Since = Annotated[datetime | None, Query(description="Start of the window (inclusive), ISO 8601 with a time zone; "
                                                     "default: 24 hours before `until`.")]  # fmt: skip
Until = Annotated[datetime | None, Query(description="End of the window (exclusive); default: now.")]


def _answer(call: Callable[[], T]) -> T:
    try:
        return call()
    except perf.BadFilter as exc:
        raise HTTPException(422, [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]) from None


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC)
    if until.tzinfo is None:
        raise perf.BadFilter("until", "give a time zone (e.g. Z or +00:00)")
    try:
        return since or until - DEFAULT_WINDOW, until
    except OverflowError:
        raise perf.BadFilter("until", "too early for a default window; give since") from None


@router.get("/performance/matrix")
def matrix(
    cfg: ConfigDep,
    max_versions: Annotated[int, Query(ge=1, le=perf.MAX_VERSIONS, description="Newest versions to show.")] = 30,
) -> perf.TaskMatrix:
    """Per-task accuracy (0-100) of each evaluated version, oldest first: the accuracy matrix R across versions,
    with AA and BWT per version."""
    with reading(cfg.database_url) as s:
        return _answer(lambda: perf.task_matrix(s, max_versions=max_versions))


@router.get("/performance/serving")
def serving(
    cfg: ConfigDep,
    since: Since = None,
    until: Until = None,
    version: Annotated[str | None, Query(max_length=32, description="Only this model version.")] = None,
) -> perf.ServingSeries:
    """Live serving numbers per version over the window, as the router recorded them minute by minute: requests per
    minute, error rate, p50/p95 latency and the mean feedback rating, per step (1 minute for an hour, up to a week
    for long windows), and totals per version."""

    def call():
        start, end = _window(since, until)
        with reading(cfg.database_url) as s:
            return perf.serving_series(s, start, end, version)

    return _answer(call)


@router.get("/performance/drift")
def drift(
    cfg: ConfigDep,
    detector: Annotated[str | None, Query(max_length=64, description="Only this detector.")] = None,
    since: Since = None,
    until: Until = None,
) -> perf.DriftHistory:
    """Each drift detector's verdicts over the window, oldest first: its value (p-value, or the statistic of a
    detector without one) against its threshold. A check's details are on the Drift screen (``/drift``)."""

    def call():
        start, end = _window(since, until)
        with reading(cfg.database_url) as s:
            known = perf.known_detectors(s, perf.configured_detectors(cfg))
            return perf.drift_history(s, start, end, detector, known=known)

    return _answer(call)
