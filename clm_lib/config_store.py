"""Configuration as numbered revisions in clm's database: who changed what, when and why.

Revision 1 is the config file (``include/clm.yaml`` or ``$CLM_CONFIG``, with its environment overrides), stored
by ``clm init`` or by the first change; until then readers see the file as revision 1 (reading never writes, so a
screen or a sensor changes nothing). Every change after it is a new revision: validated by the same pydantic
models as the file, refused whole when one field is wrong (the error names the field's path and the rule),
refused with :class:`ConfigConflict` when its editor started from a revision that is no longer the live one, and
audited (``config.changed`` / ``config.reverted``, the diff in the details).

A revision stores only the run-time-mutable fields (:mod:`clm_lib.config_fields`); paths, URLs, ports and secrets
always come from the file, the environment and the Airflow connection. Once revisions exist, the file's values of
mutable fields are not used: editing them on disk changes nothing until someone saves them as a revision (the
Configuration screen lists such fields as not used). A silent change through the file would have no
author, no reason and no review, which is what the revisions are for.

Apply at next run: :func:`live_revision` with ``as_of`` gives the revision that was live at that moment, so every
task of a DAG run resolves the revision live when the run started (``clm_lib/airflow/settings.py``), retries included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config_diff import Change, diff, diff_content
from clm_lib.config_fields import field_reasons, leaves, mutable_content, set_path
from clm_lib.db.models import ConfigRevision, utcnow
from clm_lib.errors import ClmError, ConfigError
from clm_lib.redaction import redact_text

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

log = logging.getLogger(__name__)
_PG_LOCK = 0x636C6D5F63666776  # "clm_cfgv": serializes revision writers on PostgreSQL
MAX_REASON = 2000


class ConfigConflict(ClmError):
    """The editor's base revision is not the live one: someone saved a newer revision in between."""

    def __init__(self, base: int, newer: ConfigRevision | Revision):
        self.base = base
        self.newer = newer.number
        super().__init__(
            f"conflict: you edited revision {base}, but revision {newer.number} was saved since by {newer.actor} "
            f"at {_when(newer.created_at)}; reload it and make your change again"
        )


class ConfigChangeError(ConfigError):
    """A change was refused; ``problems`` lists ``(field path, rule it broke)``. Nothing was stored."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("configuration change refused: " + "; ".join(f"{p}: {r}" for p, r in problems))


class RevisionNotFound(ConfigError, LookupError):
    """No revision has that number."""

    def __init__(self, number: int):
        self.number = number
        super().__init__(f"no configuration revision {number}")


@dataclass(frozen=True)
class Revision:
    """One configuration revision and the effective configuration it makes with the file."""

    number: int
    config: ClmConfig
    actor: str
    reason: str
    created_at: datetime
    kind: str
    """``file`` (revision 1), ``change`` or ``revert``."""
    base_number: int | None = None
    reverted_to: int | None = None
    content: dict[str, Any] = field(default_factory=dict)
    """The stored mutable fields, ``{dotted path: value}``."""


def _when(at: datetime) -> str:
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def file_source() -> str:
    """The config file revision 1 comes from, for its actor (``file:<path>``)."""
    from clm_lib.config import DEFAULT_CONFIG

    return str(os.environ.get("CLM_CONFIG") or DEFAULT_CONFIG)


def effective(file_cfg: ClmConfig, content: dict[str, Any], number: int | None = None) -> ClmConfig:
    """``file_cfg`` with the mutable fields of ``content`` in place of the file's, validated.

    Fields ``content`` holds that no longer exist or are no longer mutable (clm was upgraded since) are skipped:
    the file decides them. Raises :class:`ConfigChangeError` naming each field that breaks a rule."""
    from clm_lib.config import ClmConfig

    reasons = field_reasons(file_cfg)
    raw = file_cfg.model_dump(mode="python")  # python mode: secrets stay real, so connections still work
    for path, value in content.items():
        if reasons.get(path, "gone") is None:
            set_path(raw, path, value)
    try:
        cfg = ClmConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigChangeError(_problems(exc)) from None
    cfg._revision = number
    return cfg


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {redact_text(repr(given))})"
        out.append((path, f"{err['msg']}{shown}"))
    return out


def _as_revision(row: ConfigRevision, file_cfg: ClmConfig) -> Revision:
    return Revision(
        number=row.number,
        config=effective(file_cfg, row.content, row.number),
        actor=row.actor,
        reason=row.reason,
        created_at=row.created_at,
        kind=row.kind,
        base_number=row.base_number,
        reverted_to=row.reverted_to,
        content=dict(row.content),
    )


def _lock(session: Session) -> None:
    # Two editors from the same base: the second waits here, then sees the first one's revision (a conflict).
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    elif dialect == "sqlite":
        session.execute(text("UPDATE config_revisions SET number = number WHERE 0"))


def _newest(session: Session, as_of: datetime | None = None) -> ConfigRevision | None:
    stmt = select(ConfigRevision).order_by(ConfigRevision.number.desc()).limit(1)
    if as_of is not None:
        at = as_of.astimezone(UTC) if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        row = session.scalar(stmt.where(ConfigRevision.created_at <= at))
        # A run older than revision 1 (stored by `clm init` or the first change) ran on the file: revision 1.
        return row or session.scalar(select(ConfigRevision).order_by(ConfigRevision.number).limit(1))
    return session.scalar(stmt)


SEED_REASON = "initial version: the config file"


def seed(session: Session, file_cfg: ClmConfig) -> ConfigRevision:
    """Store revision 1 from the file, unless revisions exist already (then the newest one). ``clm init`` and the
    first change call it; readers never write (they see revision 1 as the file until it is stored)."""
    row = _newest(session)
    if row is not None:
        return row
    _lock(session)
    row = _newest(session)
    if row is None:
        content = mutable_content(file_cfg)
        row = ConfigRevision(
            number=1,
            base_number=None,
            kind="file",
            content=content,
            content_hash=_hash(content),
            actor=f"file:{file_source()}",
            reason=SEED_REASON,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
    return row


def _from_file(file_cfg: ClmConfig) -> Revision:
    # Revision 1 before it is stored: the file, as it is now.
    content = mutable_content(file_cfg)
    return Revision(number=1, config=effective(file_cfg, content, 1), actor=f"file:{file_source()}",
                    reason=SEED_REASON, created_at=utcnow(), kind="file", content=content)  # fmt: skip


def live_revision(session: Session, file_cfg: ClmConfig, as_of: datetime | None = None) -> Revision:
    """The live revision (the newest), or the one that was live at ``as_of``. Stores nothing: with no revision
    stored yet, revision 1 is the file."""
    row = _newest(session, as_of)
    return _as_revision(row, file_cfg) if row is not None else _from_file(file_cfg)


def live_config(file_cfg: ClmConfig, *, as_of: datetime | None = None, strict: bool = False) -> ClmConfig:
    """The effective configuration of the live revision (or the one live at ``as_of``), read from clm's database.

    When the database cannot be read (down, not created or not migrated yet), ``strict`` raises
    :class:`~clm_lib.errors.ConfigError` naming the problem: a DAG task must not run on values nobody chose.
    Otherwise the file's configuration is returned, so a screen can still say which store is down."""
    from sqlalchemy.exc import SQLAlchemyError

    from clm_lib.reporting.stores import StoreDown, first_line, reading

    try:
        with reading(file_cfg.database_url) as session:
            return live_revision(session, file_cfg, as_of).config
    except (StoreDown, SQLAlchemyError, ImportError, OSError) as exc:
        # ImportError: a URL whose driver is not installed here (create_engine imports it).
        problem = str(exc) if isinstance(exc, StoreDown) else first_line(exc)
        if strict:
            raise ConfigError(f"cannot read the live configuration revision from clm's database: {problem}") from None
        log.warning("configuration revisions not readable, using the config file: %s", problem)
        return file_cfg


def get_revision(session: Session, file_cfg: ClmConfig, number: int) -> Revision:
    """Revision ``number``; :class:`RevisionNotFound` when there is none."""
    row = session.get(ConfigRevision, number)
    if row is None:
        if number == 1 and _newest(session) is None:
            return _from_file(file_cfg)
        raise RevisionNotFound(number)
    return _as_revision(row, file_cfg)


def history(session: Session, limit: int = 100) -> list[tuple[ConfigRevision, list[Change]]]:
    """The newest revisions first, each with its changes against the revision before it."""
    rows = list(session.scalars(select(ConfigRevision).order_by(ConfigRevision.number.desc()).limit(limit + 1)))
    out = []
    for i, row in enumerate(rows[:limit]):
        before = rows[i + 1].content if i + 1 < len(rows) else None
        out.append((row, diff_content(before, row.content) if before is not None else []))
    return out


def _check_paths(file_cfg: ClmConfig, changes: dict[str, Any]) -> None:
    reasons = field_reasons(file_cfg)
    problems = []
    for path in changes:
        if path not in reasons:
            problems.append((path, "no such field"))
        elif reasons[path] is not None:
            problems.append((path, f"read-only at run time: {reasons[path]}"))
    if problems:
        raise ConfigChangeError(problems)


def preview(
    session: Session, *, file_cfg: ClmConfig, changes: dict[str, Any]
) -> tuple[Revision, ClmConfig, list[Change]]:
    """What saving ``changes`` would make: the live revision, the new effective config and the diff. Stores nothing;
    raises :class:`ConfigChangeError` like :func:`commit_change`."""
    _check_paths(file_cfg, changes)
    live = live_revision(session, file_cfg)
    content = {**live.content, **{p: _json(v) for p, v in changes.items()}}
    new = effective(file_cfg, content)
    return live, new, diff_content(live.content, mutable_content(new))


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _store(
    session: Session,
    *,
    file_cfg: ClmConfig,
    content: dict[str, Any],
    base_revision: int,
    actor: str,
    reason: str,
    kind: str,
    reverted_to: int | None = None,
) -> Revision:
    if not reason.strip():
        raise ConfigChangeError([("reason", "say why: a reason is required")])
    if len(reason) > MAX_REASON:
        raise ConfigChangeError([("reason", f"at most {MAX_REASON} characters")])
    seed(session, file_cfg)
    _lock(session)
    live = _newest(session)
    assert live is not None  # seeded above
    if live.number != base_revision:
        raise ConfigConflict(base_revision, live)
    leaked = [p for p, v in content.items() if redact_text(json.dumps(v)) != json.dumps(v)]
    if leaked:
        # A credential pasted into a free-text field would be stored and shown to every viewer.
        raise ConfigChangeError([(p, "looks like it carries a credential: secrets are never stored") for p in leaked])
    new_cfg = effective(file_cfg, content)
    stored = mutable_content(new_cfg)  # normalized by the models (5 -> 5.0), so equal values diff as equal
    changes = diff_content(live.content, stored)
    if not changes:
        raise ConfigChangeError([("changes", f"nothing to change: revision {live.number} already has these values")])
    row = ConfigRevision(
        number=live.number + 1,
        base_number=base_revision,
        kind=kind,
        reverted_to=reverted_to,
        content=stored,
        content_hash=_hash(stored),
        actor=actor,
        reason=reason,
        created_at=utcnow(),
    )
    session.add(row)
    details = {"revision": row.number, "base_revision": base_revision, "changes": [c.to_dict() for c in changes]}
    if reverted_to is not None:
        details["reverted_to"] = reverted_to
    audit.record(
        session,
        action="config.reverted" if kind == "revert" else "config.changed",
        target="config",
        actor=actor,
        from_value=f"revision {live.number}",
        to_value=f"revision {row.number}",
        reason=reason,
        details=details,
    )
    session.flush()
    return _as_revision(row, file_cfg)


def commit_change(
    session: Session, *, file_cfg: ClmConfig, changes: dict[str, Any], base_revision: int, actor: str, reason: str
) -> Revision:
    """Save ``changes`` (``{"deploy.bake_seconds": 30}``) as a new revision on top of ``base_revision``.

    Raises :class:`ConfigChangeError` (field path and rule; nothing stored) or :class:`ConfigConflict` (the newer
    revision named). Audited as ``config.changed`` in the caller's transaction."""
    if not changes:
        raise ConfigChangeError([("changes", "no field given")])
    _check_paths(file_cfg, changes)
    live = live_revision(session, file_cfg)
    content = {**live.content, **{p: _json(v) for p, v in changes.items()}}
    return _store(
        session,
        file_cfg=file_cfg,
        content=content,
        base_revision=base_revision,
        actor=actor,
        reason=reason,
        kind="change",
    )


def revert(session: Session, *, file_cfg: ClmConfig, to: int, base_revision: int, actor: str, reason: str) -> Revision:
    """Make revision ``to``'s values live again, as a new revision (history is never rewritten). Audited as
    ``config.reverted``; the same refusals as :func:`commit_change`, and :class:`RevisionNotFound`."""
    target = get_revision(session, file_cfg, to)
    return _store(
        session,
        file_cfg=file_cfg,
        content=target.content,
        base_revision=base_revision,
        actor=actor,
        reason=reason,
        kind="revert",
        reverted_to=to,
    )


def file_differs(live: Revision, file_cfg: ClmConfig) -> list[Change]:
    """Mutable fields whose value in the file (with its environment overrides) is not the live revision's: the
    file's value is not used (see the module docstring)."""
    return diff_content(live.content, mutable_content(file_cfg))


__all__ = [
    "Change", "ConfigChangeError", "ConfigConflict", "Revision", "RevisionNotFound", "commit_change", "diff",
    "diff_content", "effective", "file_differs", "get_revision", "history", "leaves", "live_config",
    "live_revision", "preview", "revert", "seed",
]  # fmt: skip
