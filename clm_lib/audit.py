"""The audit log: who changed what, when, from what to what, and why.

MLflow keeps no history of alias moves (mlflow#2169), so every move, promotion and rollback is
written here in the same transaction as the state change it explains.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.db.models import AuditEntry


def default_actor() -> str:
    """The human or system on whose behalf a change is made, when the caller does not say."""
    return os.environ.get("CLM_ACTOR") or f"system:{getpass.getuser()}"


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
    entry = AuditEntry(
        actor=actor or default_actor(),
        action=action,
        target=target,
        from_value=from_value,
        to_value=to_value,
        reason=reason,
        details=details or {},
    )
    session.add(entry)
    session.flush()
    return entry


def recent(session: Session, limit: int = 50, action: str | None = None) -> list[AuditEntry]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    return list(session.scalars(stmt))
