"""The configuration as the Configuration screen, ``clm config`` and ``/v1/config`` show it.

Every function takes a session on clm's database and the file configuration (file, environment, connection:
``clm_lib.airflow.settings.resolve_file_config``), and returns dataclasses the REST routes use as response models.
Changes go through :mod:`clm_lib.config_store` (validation, conflicts, audit); nothing here stores on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clm_lib import config_store as cs
from clm_lib.config_diff import Change
from clm_lib.config_fields import SECRET_REASON, SECTIONS, docs, field_reasons, leaves, section_of
from clm_lib.config_impact import drift_impact, gate_impact
from clm_lib.db.models import ConfigRevision
from clm_lib.reporting.stores import utc

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

SECRET_SHOWN = "(set; a secret, not shown)"


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two configurations."""

    path: str
    """Dotted field path, e.g. ``deploy.bake_seconds``."""
    old: Any
    """Value before (JSON)."""
    new: Any
    """Value after (JSON)."""


@dataclass(frozen=True)
class ConfigField:
    """One configuration field, its value and whether it may change at run time."""

    path: str
    """Dotted field path."""
    value: Any
    """Its value in the revision shown (JSON; secrets redacted)."""
    read_only: str | None
    """None when the field may change at run time; else why it may not."""
    doc: str
    """What the field means, from its class's documentation."""


@dataclass(frozen=True)
class ConfigSection:
    """A form of the Configuration screen."""

    key: str
    title: str
    fields: list[ConfigField]


@dataclass(frozen=True)
class RevisionInfo:
    """One configuration revision: who saved it, when, why, and what it changed against the one before."""

    number: int
    base_number: int | None
    """The revision its editor started from (None for revision 1)."""
    kind: str
    """``file`` (revision 1: the config file), ``change`` or ``revert``."""
    reverted_to: int | None
    """For a revert: the revision whose values it made live again."""
    actor: str
    reason: str
    created_at: datetime | None
    changes: list[FieldChange] = field(default_factory=list)
    """What it changed against the revision before it."""


@dataclass(frozen=True)
class ConfigView:
    """A revision's whole configuration, by section, and the file's values it ignores."""

    revision: RevisionInfo
    live_revision: int
    """The number of the live revision (the newest)."""
    sections: list[ConfigSection]
    file_source: str
    """The config file revision 1 came from."""
    file_differs: list[FieldChange]
    """Run-time fields whose value in the file (or the environment) is not the live revision's: not used."""


@dataclass(frozen=True)
class RevisionList:
    """Revisions, newest first."""

    items: list[RevisionInfo]
    total: int
    live_revision: int


@dataclass(frozen=True)
class RevisionDiff:
    """What changes from revision ``a`` to revision ``b``."""

    a: int
    b: int
    changes: list[FieldChange]


@dataclass(frozen=True)
class ConfigPreview:
    """What saving a change would do, computed from stored evaluations and drift reports. Nothing is stored."""

    base_revision: int
    """The live revision the change applies to: send it back as ``base_revision`` to save."""
    changes: list[FieldChange]
    gate: str | None
    """The gate's verdicts on stored candidates under the proposed budget (None: the gate does not change)."""
    gate_would_refuse: list[str]
    """Versions the live gate passes and the proposed one would refuse."""
    gate_would_pass: list[str]
    """Versions the live gate refuses and the proposed one would pass."""
    drift: list[str]
    """Per detector whose alpha changes: stored verdicts it would flip."""


def _changes(changes: list[Change]) -> list[FieldChange]:
    return [FieldChange(c.path, c.old, c.new) for c in changes]


def _info(row: ConfigRevision, changes: list[Change]) -> RevisionInfo:
    return RevisionInfo(row.number, row.base_number, row.kind, row.reverted_to, row.actor, row.reason,
                        utc(row.created_at), _changes(changes))  # fmt: skip


def _rev_info(rev: cs.Revision, session: Session) -> RevisionInfo:
    before = session.get(ConfigRevision, rev.number - 1)
    changes = cs.diff_content(before.content, rev.content) if before is not None else []
    return RevisionInfo(rev.number, rev.base_number, rev.kind, rev.reverted_to, rev.actor, rev.reason,
                        utc(rev.created_at), _changes(changes))  # fmt: skip


def config_view(session: Session, file_cfg: ClmConfig, number: int | None = None) -> ConfigView:
    """The live revision (or revision ``number``: :class:`~clm_lib.config_store.RevisionNotFound`), by section."""
    live = cs.live_revision(session, file_cfg)
    rev = live if number is None or number == live.number else cs.get_revision(session, file_cfg, number)
    values, reasons, doc = leaves(rev.config), field_reasons(rev.config), docs(rev.config)
    grouped: dict[str, list[ConfigField]] = {key: [] for key in SECTIONS}
    for path, value in values.items():
        key = section_of(path) if reasons[path] is None else "other"
        shown = SECRET_SHOWN if reasons[path] == SECRET_REASON and value else value  # not even redacted
        grouped[key].append(ConfigField(path, shown, reasons[path], doc.get(path, "")))
    sections = [ConfigSection(key, SECTIONS[key][0], grouped[key]) for key in SECTIONS if grouped[key]]
    return ConfigView(_rev_info(rev, session), live.number, sections, cs.file_source(),
                      _changes(cs.file_differs(live, file_cfg)))  # fmt: skip


def revision_list(session: Session, file_cfg: ClmConfig, *, offset: int = 0, limit: int = 50) -> RevisionList:
    live = cs.live_revision(session, file_cfg)
    total = session.scalar(select(func.count()).select_from(ConfigRevision)) or 0
    if total == 0:  # nothing stored yet: revision 1 is the file
        return RevisionList([_rev_info(live, session)] if offset == 0 else [], 1, live.number)
    rows = list(
        session.scalars(select(ConfigRevision).order_by(ConfigRevision.number.desc()).offset(offset).limit(limit + 1))
    )
    items = []
    for i, row in enumerate(rows[:limit]):
        before = rows[i + 1] if i + 1 < len(rows) else session.get(ConfigRevision, row.number - 1)
        items.append(_info(row, cs.diff_content(before.content, row.content) if before is not None else []))
    return RevisionList(items, total, live.number)


def revision_diff(session: Session, file_cfg: ClmConfig, a: int, b: int) -> RevisionDiff:
    """Fields that differ from revision ``a`` to ``b``, all fields compared (both on today's file)."""
    ra, rb = cs.get_revision(session, file_cfg, a), cs.get_revision(session, file_cfg, b)
    return RevisionDiff(a, b, _changes(cs.diff(ra.config, rb.config)))


def preview(session: Session, file_cfg: ClmConfig, changes: dict[str, Any]) -> ConfigPreview:
    """The diff against the live revision and what it would have changed; raises like ``commit_change``."""
    live, new_cfg, diff = cs.preview(session, file_cfg=file_cfg, changes=changes)
    gate = gate_impact(session, live.config, new_cfg)
    drift = [d.sentence for d in drift_impact(session, live.config, new_cfg)]
    return ConfigPreview(live.number, _changes(diff), gate.sentence if gate else None,
                         gate.would_refuse if gate else [], gate.would_pass if gate else [], drift)  # fmt: skip


def save(session: Session, file_cfg: ClmConfig, *, changes: dict[str, Any], base_revision: int, actor: str,
         reason: str) -> RevisionInfo:  # fmt: skip
    rev = cs.commit_change(session, file_cfg=file_cfg, changes=changes, base_revision=base_revision, actor=actor,
                           reason=reason)  # fmt: skip
    return _rev_info(rev, session)


def revert(session: Session, file_cfg: ClmConfig, *, to: int, base_revision: int, actor: str,
           reason: str) -> RevisionInfo:  # fmt: skip
    rev = cs.revert(session, file_cfg=file_cfg, to=to, base_revision=base_revision, actor=actor, reason=reason)
    return _rev_info(rev, session)
