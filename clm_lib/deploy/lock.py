"""The deploy lock: one promotion step or rollback at a time, across processes and machines.

A row of ``deploy_locks`` is the lock. Taking it is one conditional UPDATE (``holder IS NULL OR expires_at <
now``), atomic on both databases clm runs on: SQLite lets one writer in at a time, and PostgreSQL makes a
concurrent UPDATE of the same row wait for the first to commit and then re-check its WHERE against the new
row, so the loser matches nothing. Every hold carries a lease; a holder that died frees the lock when it ends.
Each holder string carries a random token, so a holder can only release what it took.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from clm_lib.db import get_engine
from clm_lib.db.models import DeployLock, utcnow
from clm_lib.errors import DeployBusyError

DEPLOY = "deploy"
"""The lock that promotions and rollbacks share."""


def holder_id(label: str) -> str:
    """A holder name people can read in a "busy" message, unique to this hold."""
    return f"{label} (pid {os.getpid()} on {socket.gethostname()}, {uuid.uuid4().hex[:8]})"[:250]


def try_acquire(url: str, holder: str, lease_seconds: float, name: str = DEPLOY) -> bool:
    """Take the lock if it is free or its lease ran out; True if this call took it."""
    now = utcnow()
    engine = get_engine(url)
    with engine.begin() as conn:
        taken = conn.execute(
            update(DeployLock)
            .where(DeployLock.name == name, or_(DeployLock.holder.is_(None), DeployLock.expires_at < now))
            .values(holder=holder, acquired_at=now, expires_at=now + timedelta(seconds=lease_seconds))
        ).rowcount
    if taken == 1:
        return True
    try:  # migration 0003 creates the "deploy" row; any other name gets its row on first use
        with engine.begin() as conn:
            if conn.execute(select(DeployLock.name).where(DeployLock.name == name)).first() is None:
                conn.execute(insert(DeployLock).values(name=name))
    except IntegrityError:  # another process created it first: fine, the next try competes for it
        pass
    return False


def release(url: str, holder: str, name: str = DEPLOY) -> None:
    """Free the lock if ``holder`` still holds it (after its lease ran out, someone else may)."""
    with get_engine(url).begin() as conn:
        conn.execute(
            update(DeployLock)
            .where(DeployLock.name == name, DeployLock.holder == holder)
            .values(holder=None, acquired_at=None, expires_at=None)
        )


def current_holder(url: str, name: str = DEPLOY) -> str | None:
    """Who holds the lock now (None: free, or the lease ran out)."""
    with get_engine(url).connect() as conn:
        row = conn.execute(select(DeployLock).where(DeployLock.name == name)).first()
    if row is None or row.holder is None:
        return None
    expires = row.expires_at
    now = utcnow() if expires.tzinfo else utcnow().replace(tzinfo=None)  # SQLite returns naive UTC
    return row.holder if expires >= now else None


@contextmanager
def deploy_lock(
    url: str,
    label: str,
    *,
    wait_seconds: float,
    lease_seconds: float,
    poll_seconds: float = 0.05,
    name: str = DEPLOY,
) -> Iterator[str]:
    """Hold the lock for the ``with`` block; wait up to ``wait_seconds`` for it, else :class:`DeployBusyError`."""
    holder = holder_id(label)
    deadline = time.monotonic() + wait_seconds
    while not try_acquire(url, holder, lease_seconds, name):
        if time.monotonic() >= deadline:
            other = current_holder(url, name) or "another promotion or rollback"
            raise DeployBusyError(
                f"busy: {other} is changing what serves; waited {wait_seconds:.0f} s. Try again when it is done."
            )
        time.sleep(poll_seconds)
    try:
        yield holder
    finally:
        release(url, holder, name)
