"""An in-memory serving backend: a test double for the rollout and rollback logic.

It keeps the contract of :class:`~clm_lib.serving.backends.base.ServingBackend` (weights validated by
``check_weights``, ``deploy`` and ``stop`` refuse a slot with traffic) so the logic under test cannot rely on
anything the real backends would refuse. What a version does live is planted per version in ``behaviour``.
The real ``local`` backend is exercised in ``test_rollout_local.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from clm_lib.errors import ServingError
from clm_lib.serving.backends.base import (
    SLOTS,
    ServingBackend,
    SlotMetrics,
    SlotStatus,
    check_slot,
    check_weights,
)


@dataclass
class Behaviour:
    """How a version behaves once loaded."""

    error_rate: float = 0.0
    p95_ms: float = 50.0
    requests_per_poll: int = 50
    feedback_mean: float | None = None
    loads: bool = True
    """False: ``deploy`` fails (a broken artifact)."""
    smoke_ok: bool = True


@dataclass
class FakeBackend(ServingBackend):
    name = "fake"
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    slots: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(SLOTS))
    down: set[str] = field(default_factory=set)
    _weights: dict[str, int] = field(default_factory=lambda: {"blue": 100, "green": 0})
    calls: list[tuple] = field(default_factory=list)
    weight_log: list[dict[str, int]] = field(default_factory=list)
    kill_at_weight: tuple[str, int] | None = None
    """(version, percent): the slot serving ``version`` dies as soon as it gets ``percent`` of traffic."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _of(self, version: str | None) -> Behaviour:
        return self.behaviour.get(version or "", Behaviour())

    def deploy(self, slot: str, model_version: str) -> SlotStatus:
        check_slot(slot)
        self.calls.append(("deploy", slot, model_version))
        if self._weights[slot] > 0:
            raise ServingError(f"{slot} carries {self._weights[slot]}% of traffic; deploy into the idle slot")
        if not self._of(model_version).loads:
            raise ServingError(f"{slot}: version {model_version} failed to load")
        self.slots[slot] = model_version
        self.down.discard(slot)
        return self.status()[slot]

    def set_weights(self, weights: dict[str, int]) -> None:
        full = check_weights(weights)
        with self.lock:
            self._weights = full
            self.weight_log.append(dict(full))
        self.calls.append(("set_weights", dict(full)))
        if self.kill_at_weight:
            version, percent = self.kill_at_weight
            for slot in SLOTS:
                if self.slots[slot] == version and full[slot] >= percent:
                    self.down.add(slot)

    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def status(self) -> dict[str, SlotStatus]:
        return {
            s: SlotStatus(
                slot=s,
                version=self.slots[s],
                healthy=self.slots[s] is not None and s not in self.down,
                url=f"fake://{s}",
                weight=self._weights[s],
                detail="killed" if s in self.down else "",
            )
            for s in SLOTS
        }

    def live_metrics(self, slot: str, since: float) -> SlotMetrics:
        check_slot(slot)
        if slot in self.down:
            raise ServingError(f"{slot} is not running")
        b = self._of(self.slots[slot])
        n = b.requests_per_poll if self._weights[slot] else 0
        return SlotMetrics(
            slot=slot, since=since, until=time.time(), requests=n, errors=round(n * b.error_rate),
            p95_ms=b.p95_ms if n else None, feedback_count=1 if b.feedback_mean is not None else 0,
            feedback_mean=b.feedback_mean,
        )  # fmt: skip

    def stop(self, slot: str) -> None:
        check_slot(slot)
        if self._weights[slot] > 0:
            raise ServingError(f"{slot} carries traffic; it cannot be stopped")
        self.calls.append(("stop", slot))
        self.slots[slot] = None

    def smoke_test(self, slot: str) -> None:
        if slot in self.down or not self._of(self.slots[slot]).smoke_ok:
            raise ServingError(f"{slot} failed its smoke test")

    def kill(self, slot: str) -> None:
        self.down.add(slot)

    def serving(self) -> str | None:
        """The version that receives every request now (None: traffic is split or goes nowhere)."""
        full = [s for s in SLOTS if self._weights[s] == 100]
        return self.slots[full[0]] if full else None


@dataclass
class FakeGolden:
    """Golden-set scores per version, as if the slot answered that share of held-out examples exactly."""

    scores: dict[str, float] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def score(self, backend: FakeBackend, slot: str) -> float:
        version = backend.slots[slot]
        self.asked.append(version)
        return self.scores.get(version, 90.0)
