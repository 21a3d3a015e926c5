"""Where a rollback goes, decided from clm's deployment history alone: :func:`plan_rollback`.

Pure (no database, no MLflow, no serving), like :func:`clm_lib.drift.policy.decide`: the rollback
(:mod:`clm_lib.deploy.rollback`), the alias reconciliation (:mod:`clm_lib.deploy.reconcile`) and the Serving screen
(:mod:`clm_lib.reporting.serving`) all call it, so the button shows the target the rollback takes.

The rules (issue #10): a rollback may only return to a version that served as champion before; anything else goes
through the promotion path (gate, canary, approval). The default target is the newest earlier champion that was
neither rolled back nor rejected since, never the champion itself: MLflow's ``previous`` alias is written from this
choice rather than read to make it, so a half-written alias cannot send a retried rollback back to the bad version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

ACTIVE = ("pending", "deploying", "deployed", "canary", "baked")
"""Statuses of a promotion still under way; any other status is final."""

_REJECTED = {
    "gate_failed": "rejected by the gate",
    "rejected": "rejected by the approver",
    "failed": "failed to deploy",
    "rolled_back": "rejected by the canary",
    "aborted": "ended by a manual rollback",
}


@dataclass(frozen=True)
class Record:
    """One row of the ``deployments`` table, as plain values."""

    id: int
    kind: str
    """promotion | rollback."""
    version: str
    from_version: str | None
    status: str
    at: datetime | None = None
    """When it ended (or started, while it runs)."""

    @property
    def made_champion(self) -> bool:
        """It put ``version`` on all traffic as champion."""
        return (self.kind, self.status) in (("promotion", "promoted"), ("rollback", "completed"))


@dataclass(frozen=True)
class Mark:
    """Why a version is marked: it was pulled from traffic or refused on its way there."""

    kind: str
    """rolled_back | rejected."""
    deployment_id: int
    text: str
    """For people, e.g. "rolled back by rollback #7"."""


@dataclass(frozen=True)
class Former:
    """A version that served as champion."""

    version: str
    deployment_id: int | None
    """The deployment that made it champion (None: champion before clm's first recorded deployment)."""
    at: datetime | None
    mark: Mark | None


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback does: end the promotion under way (``ends``), then put ``target`` on all traffic."""

    target: str | None
    """The version to put on all traffic and make champion; None: nothing to switch (only ``ends``, or refused)."""
    reason: str
    """Why this target, in one line (the Serving screen's label for the default)."""
    refusal: str | None = None
    """Why the rollback cannot be done and what to do instead; None: it can."""
    ends: int | None = None
    """The promotion under way that the rollback ends first (its candidate's traffic back to 0)."""
    ends_version: str | None = None
    eligible: list[Former] = field(default_factory=list)
    """Every version a rollback may name, newest champion first, the champion left out."""
    marks: dict[str, Mark] = field(default_factory=dict)
    """Every version that was rolled back or rejected and has not served as champion since."""

    @property
    def ok(self) -> bool:
        return self.refusal is None


def champions(history: Sequence[Record]) -> list[Former]:
    """Champion tenures, oldest first (a version may appear more than once)."""
    out: list[Former] = []
    for r in sorted(history, key=lambda r: r.id):
        if not r.made_champion:
            continue
        # A promotion's from_version was the champion when it started, read under the deploy lock: the one
        # champion clm may not have recorded itself (set before clm's first deployment). A rollback's is not
        # always (ending a promotion records the candidate there).
        if r.kind == "promotion" and r.from_version and (not out or out[-1].version != r.from_version):
            out.append(Former(r.from_version, None, None, None))
        out.append(Former(r.version, r.id, r.at, None))
    return out


def marks(history: Sequence[Record]) -> dict[str, Mark]:
    """Versions pulled from traffic or refused on the way, the newest reason each; serving as champion since
    clears the mark."""
    out: dict[str, Mark] = {}
    for r in sorted(history, key=lambda r: r.id):
        if r.made_champion:
            out.pop(r.version, None)
        if r.kind == "promotion" and r.status in _REJECTED:
            kind = "rolled_back" if r.status == "aborted" else "rejected"
            out[r.version] = Mark(kind, r.id, f"{_REJECTED[r.status]} (promotion #{r.id})")
        elif r.kind == "rollback" and r.status == "completed" and r.from_version and r.from_version != r.version:
            out[r.from_version] = Mark("rolled_back", r.id, f"rolled back by rollback #{r.id}")
    return out


def current_champion(history: Sequence[Record]) -> str | None:
    """The champion according to the history (None: no deployment made one)."""
    tenures = champions(history)
    return tenures[-1].version if tenures else None


def default_target(history: Sequence[Record], champion: str | None = None) -> Former | None:
    """The newest earlier champion that is neither the champion (``champion`` or the history's) nor marked."""
    marked = marks(history)
    skip = {champion, current_champion(history)}
    return next((f for f in reversed(champions(history)) if f.version not in skip and f.version not in marked), None)


def eligible(history: Sequence[Record], champion: str | None) -> list[Former]:
    """Every version that served as champion, newest tenure first, each once, the champion (``champion`` and the
    history's) left out."""
    marked, seen, out = marks(history), {champion, current_champion(history)}, []
    for f in reversed(champions(history)):
        if f.version not in seen:
            seen.add(f.version)
            out.append(Former(f.version, f.deployment_id, f.at, marked.get(f.version)))
    return out


def plan_rollback(history: Sequence[Record], champion: str | None, requested: str | None = None) -> RollbackPlan:
    """Where a rollback to ``requested`` (None: the default) goes, given the deployment history and the version
    MLflow names champion; or why it cannot go anywhere."""
    marked, formers = marks(history), eligible(history, champion)
    active = max((r for r in history if r.kind == "promotion" and r.status in ACTIVE), key=lambda r: r.id, default=None)
    ends = {"ends": active.id, "ends_version": active.version} if active else {}
    common = {"eligible": formers, "marks": marked, **ends}
    if champion is None:
        return RollbackPlan(None, "", "nothing to roll back to: no version is champion yet", **common)
    if requested is None or requested == champion:
        if active is not None:
            return RollbackPlan(None, f"end promotion #{active.id} of v{active.version}: v{champion} keeps all "
                                      "traffic", **common)  # fmt: skip
        if requested == champion:
            return RollbackPlan(champion, f"v{champion} is the champion: all traffic back on it", **common)
        target = default_target(history, champion)
        if target is None:
            return RollbackPlan(None, "", _no_default(champion, history, marked), **common)
        return RollbackPlan(target.version, f"v{target.version} (previous champion)", **common)
    former = next((f for f in formers if f.version == requested), None)
    if former is None:
        return RollbackPlan(None, "", _never_served(requested, history), **common)
    why = f"; it was {former.mark.text}" if former.mark else ""
    return RollbackPlan(requested, f"v{requested} (served as champion before{why})", **common)


def _no_default(champion: str, history: Sequence[Record], marked: dict[str, Mark]) -> str:
    pulled = {f.version: marked[f.version] for f in champions(history) if f.version in marked}
    if not pulled:
        return (
            f"no previous version to roll back to: version {champion} is the first champion; name a version "
            "that served as champion with --to VERSION"
        )
    listed = ", ".join(f"v{v} {m.text}" for v, m in pulled.items())
    return (
        f"no previous version to roll back to: every earlier champion was rolled back or rejected since ({listed}); "
        "to put one back anyway, name it with --to VERSION"
    )


def _never_served(version: str, history: Sequence[Record]) -> str:
    promotions = [r for r in history if r.kind == "promotion" and r.version == version]
    last = max(promotions, key=lambda r: r.id, default=None)
    if last is None:
        why = "it was never promoted"
    elif last.status in _REJECTED:
        why = f"{_REJECTED[last.status]} in promotion #{last.id}"
    else:
        why = f"its promotion #{last.id} is {last.status.replace('_', ' ')}"
    return (
        f"version {version} never served as champion ({why}), so it cannot be rolled back to: a version reaches "
        f"traffic only through the promotion path (gate, canary, approval); promote it with "
        f'`airflow dags trigger clm_promotion -c \'{{"version": "{version}"}}\'` or `clm promote {version}`'
    )
