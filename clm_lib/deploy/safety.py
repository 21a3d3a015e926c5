"""The safety rules of a bake window: each turns what was measured into a verdict a reviewer can read.

A verdict is ``ok`` (True), breached (False), or not judged (None: too little traffic to say). Only a breach
rolls back; "not judged" is recorded as such, never read as a pass in the history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from clm_lib.deploy.config import SafetyRules

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import SlotMetrics, SlotStatus


@dataclass(frozen=True)
class Check:
    rule: str
    ok: bool | None
    """True: within the limit; False: breached; None: not judged."""
    value: float | None
    limit: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def health(status: SlotStatus | None, slot: str) -> Check:
    if status is not None and status.healthy:
        return Check("health", True, None, None, f"{slot} is healthy")
    detail = f": {status.detail}" if status is not None and status.detail else ""
    return Check("health", False, None, None, f"{slot} is down{detail}")


def live(metrics: SlotMetrics, rules: SafetyRules) -> list[Check]:
    """Error rate, p95 latency and feedback of one slot's traffic in the window."""
    n = metrics.requests
    checks = []
    if n < rules.min_requests:
        why = f"not judged: {n} request(s) in the window, fewer than {rules.min_requests}"
        checks.append(Check("error_rate", None, metrics.error_rate if n else None, rules.max_error_rate, why))
        checks.append(Check("p95_latency", None, metrics.p95_ms, rules.max_p95_ms, why))
    else:
        rate = metrics.error_rate
        checks.append(
            Check(
                "error_rate",
                rate <= rules.max_error_rate,
                rate,
                rules.max_error_rate,
                f"error rate {rate:.1%} ({metrics.errors}/{n}), limit {rules.max_error_rate:.1%}",
            )
        )
        p95 = metrics.p95_ms
        checks.append(
            Check(
                "p95_latency",
                None if p95 is None else p95 <= rules.max_p95_ms,
                p95,
                rules.max_p95_ms,
                "no latency recorded" if p95 is None else f"p95 latency {p95:.0f} ms, limit {rules.max_p95_ms:.0f} ms",
            )
        )
    if rules.min_feedback_mean is not None:
        mean = metrics.feedback_mean
        if mean is None:
            checks.append(Check("feedback", None, None, rules.min_feedback_mean, "not judged: no feedback"))
        else:
            checks.append(
                Check(
                    "feedback",
                    mean >= rules.min_feedback_mean,
                    mean,
                    rules.min_feedback_mean,
                    f"mean feedback {mean:.2f} over {metrics.feedback_count} rating(s), "
                    f"minimum {rules.min_feedback_mean:.2f}",
                )
            )
    return checks


def golden(candidate: float, stable: float | None, rules: SafetyRules) -> Check:
    """The candidate's online golden-set score against the stable slot's on the same examples."""
    floor = rules.min_golden_accuracy
    if stable is not None:
        floor = max(floor, stable - rules.max_golden_drop)
    against = (
        f"stable slot {stable:.1f} - allowed drop {rules.max_golden_drop:.1f}" if stable is not None else "minimum"
    )
    return Check(
        "golden_set",
        candidate >= floor,
        candidate,
        floor,
        f"golden-set exact match {candidate:.1f}, floor {floor:.1f} ({against})",
    )


def breaches(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.ok is False]
