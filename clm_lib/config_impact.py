"""What a configuration change would have changed in the past, judged from what clm's database stored.

The gate: every stored gate decision is judged again, with the live budget and with the proposed one, on the
evaluations stored for the candidate and its champion (the same inputs :func:`clm_lib.deploy.promotion.gate`
reads), so an operator reads "the gate would have refused versions 3 and 7 with this budget" before saving.
Drift: stored detector verdicts whose p-value would fall on the other side of a changed ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.db.models import DriftReport, Evaluation, GateDecision
from clm_lib.evaluation.gate import decide
from clm_lib.evaluation.stored_metrics import gate_inputs

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

MAX_ROWS = 5000
"""Stored rows judged again at most (the newest ones): a preview must answer in a page load."""


@dataclass(frozen=True)
class GateImpact:
    """Past gate decisions judged again with the proposed gate settings."""

    checked: int
    """Stored gate decisions judged again (each candidate version once, its newest decision)."""
    would_refuse: list[str] = field(default_factory=list)
    """Versions the live gate settings pass and the proposed ones would refuse."""
    would_pass: list[str] = field(default_factory=list)
    """Versions the live gate settings refuse and the proposed ones would pass."""

    @property
    def sentence(self) -> str:
        parts = []
        if self.would_refuse:
            parts.append(f"the gate would have refused {_versions(self.would_refuse)} with this budget")
        if self.would_pass:
            parts.append(f"the gate would have passed {_versions(self.would_pass)}")
        if not parts:
            return f"no change to the gate's verdict on the {self.checked} stored candidate(s)"
        return "; ".join(parts)


@dataclass(frozen=True)
class DriftImpact:
    """Stored detector verdicts that a changed ``alpha`` would flip, by detector."""

    detector: str
    checked: int
    """Stored verdicts of this detector with a p-value."""
    would_fire: int
    """Verdicts of "no drift" that the proposed alpha makes "drift"."""
    would_not_fire: int
    """Verdicts of "drift" that the proposed alpha makes "no drift"."""

    @property
    def sentence(self) -> str:
        return (f"{self.detector}: of {self.checked} stored checks, {self.would_fire} more would have found drift "
                f"and {self.would_not_fire} fewer (by p-value against alpha)")  # fmt: skip


def _versions(vs: list[str]) -> str:
    label = "version" if len(vs) == 1 else "versions"
    return f"{label} {', '.join(vs[:-1]) + ' and ' + vs[-1] if len(vs) > 1 else vs[0]}"


def gate_impact(session: Session, live: ClmConfig, proposed: ClmConfig) -> GateImpact | None:
    """None when the gate settings do not change."""
    if live.gate == proposed.gate:
        return None
    newest: dict[str, Evaluation] = {}
    for ev in session.scalars(select(Evaluation).order_by(Evaluation.id.desc()).limit(MAX_ROWS)):
        if ev.model_version is not None:
            newest.setdefault(ev.model_version, ev)
    seen: set[str] = set()
    refuse, allow = [], []
    for d in session.scalars(select(GateDecision).order_by(GateDecision.id.desc()).limit(MAX_ROWS)):
        if d.model_version in seen:
            continue
        seen.add(d.model_version)
        candidate_ev = newest.get(d.model_version)
        if candidate_ev is None or not candidate_ev.scores:
            continue
        champion_ev = newest.get(d.champion_version) if d.champion_version else None
        candidate, champion, metrics, _ = gate_inputs(candidate_ev, champion_ev)
        before = decide(candidate, champion, live.gate, metrics).passed
        after = decide(candidate, champion, proposed.gate, metrics).passed
        if before and not after:
            refuse.append(d.model_version)
        elif after and not before:
            allow.append(d.model_version)
    key = lambda v: (len(v), v)  # noqa: E731 - versions are numbers in strings
    return GateImpact(checked=len(seen), would_refuse=sorted(refuse, key=key), would_pass=sorted(allow, key=key))


def drift_impact(session: Session, live: ClmConfig, proposed: ClmConfig) -> list[DriftImpact]:
    """One entry per detector whose ``alpha`` changes and that has stored verdicts."""
    out = []
    for name in type(live.drift).model_fields:
        old, new = getattr(live.drift, name, None), getattr(proposed.drift, name, None)
        if not hasattr(old, "alpha") or old.alpha == new.alpha:
            continue
        rows = session.execute(
            select(DriftReport.p_value, DriftReport.drift)
            .where(DriftReport.detector == name, DriftReport.p_value.is_not(None))
            .order_by(DriftReport.id.desc())
            .limit(MAX_ROWS)
        ).all()
        if rows:
            fire = sum(1 for p, drift in rows if not drift and p < new.alpha)
            calm = sum(1 for p, drift in rows if drift and p >= new.alpha)
            out.append(DriftImpact(name, len(rows), fire, calm))
    return out
