"""The review queue as the screen and ``/clm/api/v1/review`` show it: corrections waiting for an operator, a page
at a time, and the latest decisions. The decisions themselves are :mod:`clm_lib.serving.review`'s."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlalchemy import func, select

from clm_lib.config import ClmConfig
from clm_lib.db.models import ServingFeedback
from clm_lib.reporting.stores import reading, utc
from clm_lib.serving.review import ACCEPTED, PENDING, REJECTED, ReviewItem


def _item(r: ServingFeedback) -> ReviewItem:
    item = ReviewItem(**{f: getattr(r, f) for f in ReviewItem.__dataclass_fields__})
    return replace(item, created_at=utc(item.created_at), reviewed_at=utc(item.reviewed_at))


@dataclass(frozen=True)
class ReviewPage:
    """Pending corrections (oldest first: they have waited longest), ``limit`` from ``offset``, of ``total``."""

    items: list[ReviewItem]
    total: int
    offset: int
    limit: int
    decided: list[ReviewItem] = field(default_factory=list)
    """The latest accepted or rejected corrections, newest first."""
    counts: dict[str, int] = field(default_factory=dict)
    """Corrections by status: pending_review, accepted, rejected."""

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def queue(cfg: ClmConfig, *, offset: int = 0, limit: int = 50, decided: int = 20) -> ReviewPage:
    with reading(cfg.database_url) as s:
        corrections = ServingFeedback.correction.is_not(None)
        counts = dict(
            s.execute(
                select(ServingFeedback.status, func.count(ServingFeedback.id))
                .where(corrections, ServingFeedback.status.in_((PENDING, ACCEPTED, REJECTED)))
                .group_by(ServingFeedback.status)
            ).all()
        )
        stmt = select(ServingFeedback).where(ServingFeedback.status == PENDING).order_by(ServingFeedback.id)
        items = [_item(r) for r in s.scalars(stmt.offset(offset).limit(limit))]
        done = select(ServingFeedback).where(ServingFeedback.status.in_((ACCEPTED, REJECTED)), corrections)
        recent = [_item(r) for r in s.scalars(done.order_by(ServingFeedback.reviewed_at.desc()).limit(decided))]
    counts = {k: int(counts.get(k, 0)) for k in (PENDING, ACCEPTED, REJECTED)}
    return ReviewPage(items, counts[PENDING], offset, limit, recent, counts)
