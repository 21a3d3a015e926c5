"""The audit log: who changed what, when, from what to what, and why; tamper-evident.

MLflow keeps no history of alias moves (mlflow#2169), so every move, promotion and rollback is
written here in the same transaction as the state change it explains.

Entries form a hash chain: each stores the previous entry's ``hash`` as ``prev_hash``, and its own
``hash`` is an HMAC-SHA256, under the audit key, of its fields and ``prev_hash``. Whoever can write the
table but does not hold the key cannot edit, delete or reorder an entry without :func:`verify` naming it.
Writers are serialized (an advisory lock on PostgreSQL, the write lock on SQLite) and ``prev_hash`` is
unique, so two concurrent writers cannot fork the chain. A trigger refuses UPDATE and DELETE (migration
0005). What the chain cannot show alone is the loss of the newest entries: keep the ``head`` that
``clm audit verify`` prints somewhere else to catch that (docs/reliability.md, "Audit log").

The key: ``$CLM_AUDIT_KEY`` when set (production: from the secret store that holds Airflow's secrets),
else the file ``$CLM_HOME/audit.key`` (0600), which ``clm init`` creates next to Airflow's secrets.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from clm_lib.db.models import AuditEntry, utcnow
from clm_lib.errors import ClmError

KEY_ENV = "CLM_AUDIT_KEY"
KEY_FILE = "audit.key"
GENESIS = "0" * 64
"""``prev_hash`` of the first entry: a value, not NULL, so the unique index also stops two first entries."""
# Any constant bigint, the same in every clm process: the PostgreSQL advisory lock that serializes writers.
_PG_LOCK = 0x636C6D5F61756474  # "clm_audt"


def default_actor() -> str:
    """``system:<OS user>``: who runs this process, when no authenticated caller is known.

    Never read from an environment variable: anyone could claim to be anyone. Callers that know an authenticated
    user (the REST API, the screens) pass ``actor=`` themselves.
    """
    try:
        return f"system:{getpass.getuser()}"
    except (KeyError, OSError):  # a container user without a passwd entry or $USER
        return f"system:uid-{os.getuid()}"


# --- the key -------------------------------------------------------------------------------------------


def ensure_key(home: Path) -> Path:
    """``home/audit.key``, created 0600 with 32 random bytes if it does not exist yet (safe when raced)."""
    path = Path(home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path


def _home(home: Path | None) -> Path:
    if home is not None:
        return Path(home)
    if os.environ.get("CLM_HOME"):
        return Path(os.environ["CLM_HOME"]).expanduser().resolve()
    from clm_lib.config import DEFAULT_CONFIG

    # Every entry needs the key: parsing clm.yaml for each one cost ~15 ms (an ingest batch writes one). The
    # home is read again when anything it comes from changes: the working folder, clm's variables, the file.
    config = Path(os.environ.get("CLM_CONFIG") or DEFAULT_CONFIG)
    try:
        stat = config.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    except OSError:
        stamp = None  # load_config says what is wrong
    clm_env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CLM")))
    return _configured_home(str(Path.cwd()), str(config), stamp, clm_env)


@lru_cache(maxsize=8)
def _configured_home(cwd: str, config: str, stamp: tuple[int, int, int] | None, clm_env: tuple) -> Path:
    from clm_lib.config import load_config

    return load_config().home


def key_source(home: Path | None = None, *, create: bool = False) -> str:
    """Where the key comes from: ``$CLM_AUDIT_KEY``, or the key file (created first when ``create``)."""
    if os.environ.get(KEY_ENV, "").strip():
        return f"${KEY_ENV}"
    folder = _home(home)
    return str(ensure_key(folder) if create else folder / KEY_FILE)


def audit_key(home: Path | None = None) -> bytes:
    """The HMAC key: ``$CLM_AUDIT_KEY``, else ``<home>/audit.key`` (home: ``$CLM_HOME``, else the config's)."""
    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        return value.encode()
    path = ensure_key(_home(home))
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ClmError(f"cannot read the audit key {path}: {exc.strerror or exc}") from None
    if not value:
        raise ClmError(f"the audit key {path} is empty: restore it from a backup (a new key breaks verification)")
    return value.encode()


# --- the chain -----------------------------------------------------------------------------------------


def canonical_time(at: datetime) -> str:
    # SQLite hands back naive datetimes for timezone-aware columns; clm writes UTC, so naive means UTC.
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(key: bytes, entry: Any) -> str:
    """HMAC-SHA256 of an entry's fields and ``prev_hash`` (anything with AuditEntry's attributes, rows included).

    The serialization is a format: changing it makes every stored entry fail :func:`verify`.
    """
    fields = {
        "at": canonical_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "from_value": entry.from_value,
        "to_value": entry.to_value,
        "reason": entry.reason,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, blob.encode(), hashlib.sha256).hexdigest()


def _serialize_writers(session: Session) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Held until the transaction ends, so the head read below stays the head until this entry commits.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    elif dialect == "sqlite":
        # Take the write lock before reading the head: a transaction that read first could not write once
        # another writer committed (SQLITE_BUSY_SNAPSHOT); this one waits its turn (busy timeout) instead.
        # It matches no row, so the trigger refusing UPDATE does not fire.
        session.execute(text("UPDATE audit_log SET id = id WHERE 0"))


def record(
    session: Session,
    *,
    action: str,
    target: str,
    actor: str | None = None,
    from_value: str | None = None,
    to_value: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry to the chain, in ``session``'s transaction (it commits or rolls back with the change)."""
    key = audit_key()
    _serialize_writers(session)
    head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)) or GENESIS
    entry = AuditEntry(
        at=utcnow(),
        actor=actor or default_actor(),
        action=action,
        target=target,
        from_value=from_value,
        to_value=to_value,
        reason=reason,
        # Stored as it will read back (tuples become lists, odd values strings), so the hash survives a round trip.
        details=json.loads(json.dumps(details or {}, default=str)),
        prev_hash=head,
    )
    entry.hash = entry_hash(key, entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found: ``ok``, or the first broken entry and why."""

    ok: bool
    checked: int
    """Entries checked (all of them when ``ok``)."""
    head: str | None
    """Hash of the newest entry: keep it elsewhere to detect, later, the loss of the newest entries."""
    broken_id: int | None = None
    problem: Literal["edited", "deleted", "reordered"] | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(session: Session, key: bytes | None = None) -> VerifyResult:
    """Walk the chain oldest first; stop at the first entry that was edited, follows a deleted one, or moved."""
    key = key or audit_key()
    owner = {h: i for i, h in session.execute(select(AuditEntry.id, AuditEntry.hash))}
    prev: AuditEntry | None = None
    checked = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=500)):
        if not hmac.compare_digest(entry.hash or "", entry_hash(key, entry)):
            hint = " (or the audit key is not the one it was written with)" if prev is None else ""
            return _broken(checked, entry, "edited", f"entry #{entry.id} was changed after it was written: "
                           f"its hash does not match its content{hint}")
        expected = prev.hash if prev else GENESIS
        if entry.prev_hash != expected:
            after = f"entry #{prev.id}" if prev else "the start of the log"
            if entry.prev_hash in owner:
                return _broken(checked, entry, "reordered", f"entry #{entry.id} was written after entry "
                               f"#{owner[entry.prev_hash]} but now follows {after}: entries were reordered")
            what = "an entry before it was deleted" if prev is None else "an entry between them was deleted"
            return _broken(checked, entry, "deleted", f"entry #{entry.id} does not follow {after}: {what}")
        prev = entry
        checked += 1
    head = prev.hash if prev else None
    shown = f", head {head}" if head else ""
    return VerifyResult(True, checked, head, message=f"audit chain intact: {checked} entries{shown}")


def _broken(checked: int, entry: AuditEntry, problem: str, message: str) -> VerifyResult:
    return VerifyResult(False, checked, None, broken_id=entry.id, problem=problem, message=message)  # type: ignore[arg-type]


def recent(session: Session, limit: int = 50, action: str | None = None) -> list[AuditEntry]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    return list(session.scalars(stmt))
