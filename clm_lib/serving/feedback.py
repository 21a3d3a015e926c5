"""Ratings of served answers, and the good ones as new training data.

Decision: training examples from feedback are written as JSONL files into the **landing folder**, not appended
to a Delta table from the server. That way they go through the same path as any other new data (the GX suite,
dedupe against what is curated, quarantine with a reason, lineage, the volume trigger) and a serving process
never writes to the lake, whose commits are serialised through ``clm_ingest``. Each record is
``task, prompt, response`` plus ``source, rating, response_id, model_version, slot, corrected``, which ingest keeps
in the record's metadata.

Only answers worth learning from become examples: a ``correction`` (as the response), or a rating of at least
``serving.feedback_min_rating`` (the model's answer). Every rating, good or bad, is also appended to
``$CLM_HOME/serving/feedback/ratings-<slot>.jsonl``, the raw log for analysis and preference training.

Examples are batched in ``landing/.feedback-<slot>.jsonl.part`` (ingest skips hidden files) and published by a
rename every ``feedback_batch_rows`` rows or ``feedback_flush_s`` seconds and when the slot stops; a part file left
by a crash is published when the slot starts again, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clm_lib.config import ClmConfig

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


class FeedbackSink:
    """Writes ratings to the log and publishes training examples to the landing folder."""

    def __init__(self, cfg: ClmConfig, slot: str):
        self.slot = slot
        self.min_rating = cfg.serving.feedback_min_rating
        self.batch_rows = cfg.serving.feedback_batch_rows
        self.flush_s = cfg.serving.feedback_flush_s
        self.landing = cfg.landing_dir
        self.ratings = cfg.home / "serving" / "feedback" / f"ratings-{slot}.jsonl"
        self.pending = self.landing / f".feedback-{slot}.jsonl.part"
        self.pending_rows = 0
        self.first_pending: float | None = None
        self.published: list[Path] = []
        self._publish()  # what a crashed predecessor left behind

    def record(
        self, served: Served, rating: float, *, correction: str | None, task: str | None, comment: str | None
    ) -> tuple[bool, str]:
        """Log the rating; return (became a training example, why or why not)."""
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
        }
        _append(self.ratings, entry)
        if correction is None and rating < self.min_rating:
            return False, f"rating below {self.min_rating}: logged, not used as a training example"
        if not task:
            return False, "no task: name it in the feedback or in the request's metadata.task to train on it"
        example = {
            "task": task,
            "prompt": served.prompt,
            "response": correction if correction is not None else served.response,
            "source": "feedback",
            "rating": rating,
            "response_id": served.id,
            "model_version": served.version,
            "slot": self.slot,
            "corrected": correction is not None,
        }
        _append(self.pending, example)
        self.pending_rows += 1
        self.first_pending = self.first_pending or time.monotonic()
        if self.pending_rows >= self.batch_rows:
            self._publish()
        return True, "queued as a training example for the landing folder"

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
        target = self.landing / f"feedback-{self.slot}-{stamp}.jsonl"
        os.replace(self.pending, target)
        self.published.append(target)
        log.info("published feedback examples to %s", target)


def _append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
