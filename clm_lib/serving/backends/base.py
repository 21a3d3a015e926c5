"""The one shape of a serving backend: two slots (blue, green), traffic weights between them, live metrics.

Promotion and rollback (:mod:`clm_lib.deploy`) drive slots only through this interface, so the same rollout
runs on local processes and on Kubernetes. Every method is synchronous and safe to call from another process
than the one that deployed (an Airflow task, the CLI): backends keep their state outside the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from clm_lib.errors import ServingError

SLOTS = ("blue", "green")


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise ServingError(f"unknown slot {slot!r}: slots are {', '.join(SLOTS)}")
    return slot


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(check_slot(slot))]


def check_weights(weights: dict[str, int], *, allow_none: bool = False) -> dict[str, int]:
    """Both slots, integer percentages summing to 100 (a slot left out gets 0); all 0 only if ``allow_none``."""
    unknown = set(weights) - set(SLOTS)
    if unknown:
        raise ServingError(f"unknown slot(s) in weights: {', '.join(sorted(unknown))}; slots are {', '.join(SLOTS)}")
    full = {s: weights.get(s, 0) for s in SLOTS}
    for slot, w in full.items():
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100:
            raise ServingError(f"weight of {slot} must be an integer percentage 0..100, got {w!r}")
    if sum(full.values()) != 100 and not (allow_none and not any(full.values())):
        raise ServingError(f"weights must sum to 100, got {full}")
    return full


@dataclass(frozen=True)
class SlotStatus:
    """What runs in a slot right now."""

    slot: str
    version: str | None
    """Model version the slot serves (None: nothing deployed)."""
    healthy: bool
    """Answers ``/healthz`` as ready (local), or every desired pod is ready (kubernetes)."""
    url: str | None = None
    """Where the slot itself answers (bypassing the router / Service), for smoke tests."""
    weight: int = 0
    """Percent of traffic sent to it."""
    pid: int | None = None
    """``local``: the ``clm serve`` process."""
    pods: list[str] = field(default_factory=list)
    """``kubernetes``: the slot's pods."""
    detail: str = ""
    """Why it is unhealthy, or what it is doing."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SlotMetrics:
    """Traffic a slot served since a point in time, as clients saw it."""

    slot: str
    since: float
    """Unix time the window starts."""
    until: float
    requests: int
    errors: int
    """Failed requests: the slot unreachable, timed out, or answering 5xx (a 4xx is the client's error)."""
    p95_ms: float | None
    """95th percentile latency in milliseconds (None without requests)."""
    feedback_count: int = 0
    feedback_mean: float | None = None
    """Mean rating (0 bad .. 1 good) of the slot's answers rated in the window."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"error_rate": self.error_rate}


class ServingBackend(ABC):
    """Two serving slots and the traffic split between them."""

    name: ClassVar[str]

    @abstractmethod
    def deploy(self, slot: str, model_version: str) -> SlotStatus:
        """Load ``model_version`` into ``slot`` (replacing what it served) and wait until it is healthy.

        Refuses (``ServingError``) a slot that carries traffic: deploy into the idle slot, then shift weights.
        """

    @abstractmethod
    def set_weights(self, weights: dict[str, int]) -> None:
        """Split traffic, e.g. ``{"blue": 90, "green": 10}``; takes effect at once and atomically."""

    @abstractmethod
    def weights(self) -> dict[str, int]:
        """The current split, both slots named."""

    @abstractmethod
    def status(self) -> dict[str, SlotStatus]:
        """Per slot: version, health, address, process or pods."""

    @abstractmethod
    def live_metrics(self, slot: str, since: float) -> SlotMetrics:
        """What clients saw from ``slot`` since unix time ``since``: requests, errors, p95, feedback."""

    @abstractmethod
    def stop(self, slot: str) -> None:
        """Stop serving from ``slot`` (in-flight requests finish). Refuses a slot that carries traffic."""

    @abstractmethod
    def smoke_test(self, slot: str) -> None:
        """Send one completion straight to ``slot``; raises ``ServingError`` unless it answers well."""
