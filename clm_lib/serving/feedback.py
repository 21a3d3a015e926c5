"""Ratings of served answers: one per response, stored with who sent it; good ones become training data.

Every feedback is a row of clm's ``serving_feedback`` table, whose unique ``response_id`` makes a second
feedback on the same answer a 409 on every slot and pod, with the owner of the API key it came with. Every
rating, good or bad, is also appended to ``$CLM_HOME/serving/feedback/ratings-<slot>.jsonl``, the raw log for
analysis and preference training.

What may become training data, and how:

- a rating of at least ``serving.feedback_min_rating`` (the model's own answer, for a known task) is written as
  a JSONL example into the **landing folder**, not appended to a Delta table from the server: it goes through
  the same path as any other new data (the GX suite, dedupe against what is curated, quarantine with a reason,
  lineage, the volume trigger), whose lake commits ``clm_ingest`` serialises. Each record is
  ``task, prompt, response`` plus ``source, rating, response_id, model_version, slot, corrected``, which ingest
  keeps in the record's metadata;
- a ``correction`` is text a client wrote, so it never reaches the landing folder by itself: it goes to the
  review queue (:mod:`clm_lib.serving.review`), a ``quarantine`` row with reason ``pending_review``, and reaches
  training only when an operator accepts it (``clm feedback accept``).

Examples are batched in ``landing/.feedback-<slot>.jsonl.part`` (ingest skips hidden files; with an ``s3://``
landing location, in ``<home>/landing-staging/``) and published by a rename (or one PUT to S3) every
``feedback_batch_rows`` rows or ``feedback_flush_s`` seconds and when the slot stops; a part file left by a crash is
published when the slot starts again, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from clm_lib.config import ClmConfig
from clm_lib.data.landing_s3 import deliver, staging_dir
from clm_lib.db import session_scope
from clm_lib.db.models import ServingFeedback
from clm_lib.serving import review
from clm_lib.serving.keys import Caller

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """An answer the server gave, remembered so that feedback can name it."""

    id: str
    prompt: str
    response: str
    version: str
    task: str | None
    created: int


class ResponseLog:
    """The last ``size`` answers by id (oldest forgotten first)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Served] = OrderedDict()

    def add(self, served: Served) -> None:
        self._items[served.id] = served
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> Served | None:
        return self._items.get(response_id)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DuplicateFeedback(Exception):
    """The response already has a feedback."""


@dataclass(frozen=True)
class Outcome:
    """What became of one feedback: its row id, its status, and a sentence for the client."""

    feedback_id: int
    status: str
    training_example: bool
    note: str


class FeedbackSink:
    """Stores feedback, writes ratings to the log, queues corrections for review and publishes good answers to
    the landing folder. Not thread-safe: the server calls it from one worker thread."""

    def __init__(self, cfg: ClmConfig, slot: str):
        self.cfg = cfg
        self.slot = slot
        self.min_rating = cfg.serving.feedback_min_rating
        self.batch_rows = cfg.serving.feedback_batch_rows
        self.flush_s = cfg.serving.feedback_flush_s
        self.ratings = cfg.home / "serving" / "feedback" / f"ratings-{slot}.jsonl"
        self.pending = staging_dir(cfg) / f".feedback-{slot}.jsonl.part"
        self.pending_rows = 0
        self.first_pending: float | None = None
        self.published: list[str] = []
        """Where each published file went (a path in the landing folder, or an ``s3://`` URI)."""
        self._publish()  # what a crashed predecessor left behind

    def _decide(self, rating: float, correction: str | None, task: str | None) -> tuple[str, str]:
        if not task and (correction is not None or rating >= self.min_rating):
            return "logged", "no task: name it in the feedback or in the request's metadata.task to train on it"
        if correction is not None:
            return review.PENDING, "correction queued for an operator's review; it becomes training data once accepted"
        if rating < self.min_rating:
            return "logged", f"rating below {self.min_rating}: logged, not used as a training example"
        return "example", "queued as a training example for the landing folder"

    def _store(self, served: Served, rating: float, status: str, *, correction, task, comment, caller) -> int:
        """The feedback's row id; with a correction to review, its quarantine row is written in the same
        transaction, so a failure leaves neither and the client may send the feedback again."""
        try:
            with session_scope(self.cfg.database_url) as s:
                row = ServingFeedback(
                    response_id=served.id, slot=self.slot, model_version=served.version, task=task, rating=rating,
                    prompt=served.prompt, response=served.response, correction=correction, comment=comment,
                    owner=caller.owner, api_key_id=caller.key_id, status=status,
                )  # fmt: skip
                s.add(row)
                s.flush()
                if status == review.PENDING:
                    review.quarantine_correction(self.cfg, row)
                return row.id
        except IntegrityError:
            raise DuplicateFeedback(served.id) from None

    def record(
        self,
        served: Served,
        rating: float,
        *,
        correction: str | None,
        task: str | None,
        comment: str | None,
        caller: Caller,
    ) -> Outcome:
        """Store and log the feedback and route it (see the module docstring); raises :class:`DuplicateFeedback`."""
        status, note = self._decide(rating, correction, task)
        feedback_id = self._store(
            served, rating, status, correction=correction, task=task, comment=comment, caller=caller
        )
        entry = {
            "rated_at": _now(),
            "response_id": served.id,
            "model_version": served.version,
            "slot": self.slot,
            "rating": rating,
            "task": task,
            "prompt": served.prompt,
            "response": served.response,
            "correction": correction,
            "comment": comment,
            "owner": caller.owner,
            "feedback_id": feedback_id,
            "status": status,
        }
        _append(self.ratings, entry)
        if status != "example":
            return Outcome(feedback_id, status, False, note)
        example = {
            "task": task,
            "prompt": served.prompt,
            "response": served.response,
            "source": "feedback",
            "rating": rating,
            "response_id": served.id,
            "model_version": served.version,
            "slot": self.slot,
            "corrected": False,
            "owner": caller.owner,
        }
        _append(self.pending, example)
        self.pending_rows += 1
        self.first_pending = self.first_pending or time.monotonic()
        if self.pending_rows >= self.batch_rows:
            self._publish()
        return Outcome(feedback_id, status, True, note)

    def flush_if_due(self) -> None:
        if self.first_pending is not None and time.monotonic() - self.first_pending >= self.flush_s:
            self._publish()

    def close(self) -> None:
        self._publish()

    def _publish(self) -> None:
        self.pending_rows, self.first_pending = 0, None
        try:
            if self.pending.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = deliver(self.cfg, self.pending, f"feedback-{self.slot}-{stamp}.jsonl")
        self.published.append(target)
        log.info("published feedback examples to %s", target)


def _append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
