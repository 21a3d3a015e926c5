"""The deploy lock: one promotion step or rollback at a time, across processes and machines, fenced.

A row of ``deploy_locks`` is the lock. Taking it is one conditional UPDATE (free, or its lease ran out), atomic on
both databases clm runs on: SQLite lets one writer in at a time, and PostgreSQL makes a concurrent UPDATE of the
same row wait for the first to commit and then re-check its WHERE against the new row, so the loser matches
nothing. The same UPDATE increments the row's ``token``: every acquisition gets a larger one (a fencing token).

Every time is the database's (``CURRENT_TIMESTAMP`` in the UPDATE that takes or renews the lease), never the
client's: a worker whose clock runs an hour fast cannot see a live lease as expired, nor one an hour slow take a
lease that is already over.

While held, a heartbeat thread renews the lease every ``lease / 5`` seconds (at most every 60 s), so a holder
that waits long under the lock (a Kubernetes rollout) keeps it, and one that died frees it within one lease. A holder
name carries its process (pid, start mark, pid namespace, host): a holder on this machine whose process has exited
(kill -9, OOM) is taken over at once instead of after its lease, since no heartbeat can come from it again.
Before each serving change (slot weights, loading or stopping a slot, an alias write) the holder calls
:meth:`Lease.fence`: a conditional UPDATE that matches only while the row still carries its holder name and token,
and renews the lease. A holder that was paused past its lease while another took the lock (a larger token) gets
:class:`LeaseLost` there and changes nothing more. The fence also renews: a serving change that starts after it has
a whole lease before anyone else can take the lock, which is why the configuration refuses a lease shorter than
the longest single serving call (:func:`clm_lib.deploy.config.check_lease`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import DateTime, Float, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from clm_lib.db import get_engine
from clm_lib.db.models import DeployLock
from clm_lib.errors import DeployBusyError, DeployError
from clm_lib.services.process_identity import is_same, start_mark

log = logging.getLogger(__name__)

DEPLOY = "deploy"
"""The lock that promotions and rollbacks share."""


class LeaseLost(DeployError):
    """The holder's fencing token is no longer the lock's: another process took the lock after this one's lease
    ran out. Nothing more may be changed."""


class db_now(FunctionElement):
    """The database's current UTC time plus ``seconds``, stored the way SQLAlchemy stores datetimes on each
    backend (SQLite compares them as text, so the format must match to the microsecond field)."""

    type = DateTime(timezone=True)
    inherit_cache = True

    def __init__(self, seconds: float = 0.0):
        super().__init__(literal(float(seconds), Float))


@compiles(db_now)
def _db_now_default(element, compiler, **kw):  # PostgreSQL (and any backend with SQL-standard intervals)
    (seconds,) = element.clauses
    return f"(CURRENT_TIMESTAMP + {compiler.process(seconds, **kw)} * INTERVAL '1 second')"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element, compiler, **kw):
    (seconds,) = element.clauses
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', ({compiler.process(seconds, **kw)}) || ' seconds')"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "pid:?"


_PROCESS = re.compile(r" \(pid (\d+) ((?:ticks|created):[\d.]+) (pid:\[\d+\]) on (\S+), [0-9a-f]{8}\)$")


def holder_id(label: str) -> str:
    """A holder name people can read in a "busy" message, unique to this hold, naming its process well enough to
    tell later whether that process still runs (:func:`abandoned`)."""
    pid = os.getpid()
    who = f" (pid {pid} {start_mark(pid) or '-'} {_pid_namespace()} on {socket.gethostname()}, {uuid.uuid4().hex[:8]})"
    return label[: max(0, 250 - len(who))] + who


def abandoned(holder: str) -> bool:
    """True when ``holder`` was a process on this machine that has exited. Only the same host *and* the same pid
    namespace can tell: containers sharing the host's network share its hostname but not its pids. A holder
    elsewhere, or one this cannot read, is waited out as before."""
    m = _PROCESS.search(holder)
    if m is None:
        return False
    pid, mark, namespace, host = m.groups()
    if host != socket.gethostname() or namespace != _pid_namespace():
        return False
    return not is_same(int(pid), mark)


def heartbeat_interval(lease_seconds: float) -> float:
    """How often a holder renews its lease: a fifth of it (four renewals may fail before it runs out), at most
    every minute."""
    return min(lease_seconds / 5, 60.0)


def _take(engine, holder: str, lease_seconds: float, name: str, free) -> int | None:
    with engine.begin() as conn:
        taken = conn.execute(
            update(DeployLock)
            .where(DeployLock.name == name, free)
            .values(
                holder=holder,
                token=DeployLock.token + 1,
                acquired_at=db_now(),
                heartbeat_at=db_now(),
                expires_at=db_now(lease_seconds),
            )
        ).rowcount
        if taken == 1:  # same transaction: the token this UPDATE wrote
            return conn.execute(select(DeployLock.token).where(DeployLock.name == name)).scalar_one()
    return None


def acquire(url: str, holder: str, lease_seconds: float, name: str = DEPLOY) -> int | None:
    """Take the lock if it is free, its lease ran out (the database's clock) or its holder's process on this
    machine has exited; the new fencing token, or None if someone else holds it."""
    engine = get_engine(url)
    token = _take(
        engine, holder, lease_seconds, name, or_(DeployLock.holder.is_(None), DeployLock.expires_at <= db_now())
    )
    if token is not None:
        return token
    with engine.connect() as conn:
        other = conn.execute(select(DeployLock.holder).where(DeployLock.name == name)).scalar()
    if other is not None and abandoned(other):
        # Conditional on that exact holder: of two waiters that both saw it dead, one takes it, the other waits.
        token = _take(engine, holder, lease_seconds, name, DeployLock.holder == other)
        if token is not None:
            log.warning("took the %s lock from %s, whose process has exited", name, other)
            return token
    if other is None:
        try:  # migration 0003 creates the "deploy" row; any other name gets its row on first use
            with engine.begin() as conn:
                if conn.execute(select(DeployLock.name).where(DeployLock.name == name)).first() is None:
                    conn.execute(insert(DeployLock).values(name=name, token=0))
        except IntegrityError:  # another process created it first: fine, the next try competes for it
            pass
    return None


try_acquire = acquire
"""The name the first version of this module used (True-ish when taken)."""


def renew(url: str, holder: str, token: int, lease_seconds: float, name: str = DEPLOY) -> bool:
    """Extend the lease by ``lease_seconds`` from the database's now, if ``holder`` with ``token`` still holds the
    lock: False when another acquisition happened since (a larger token) or it was released.

    A lease that ran out while nobody took the lock is renewed too: the token unchanged proves nobody held the lock
    in between, which is all the fence has to guarantee."""
    with get_engine(url).begin() as conn:
        return (
            conn.execute(
                update(DeployLock)
                .where(DeployLock.name == name, DeployLock.holder == holder, DeployLock.token == token)
                .values(heartbeat_at=db_now(), expires_at=db_now(lease_seconds))
            ).rowcount
            == 1
        )


def release(url: str, holder: str, name: str = DEPLOY) -> None:
    """Free the lock if ``holder`` still holds it (after its lease ran out, someone else may). The token stays:
    the next acquisition increments it."""
    with get_engine(url).begin() as conn:
        conn.execute(
            update(DeployLock)
            .where(DeployLock.name == name, DeployLock.holder == holder)
            .values(holder=None, acquired_at=None, heartbeat_at=None, expires_at=None)
        )


@dataclass(frozen=True)
class LockState:
    holder: str | None
    """None: free, or its lease ran out."""
    token: int


def state(url: str, name: str = DEPLOY) -> LockState:
    """Who holds the lock now by the database's clock, and the newest fencing token handed out."""
    with get_engine(url).connect() as conn:
        row = conn.execute(
            select(DeployLock.holder, DeployLock.token, DeployLock.expires_at > db_now()).where(DeployLock.name == name)
        ).first()
    if row is None:
        return LockState(None, 0)
    holder, token, live = row
    return LockState(holder if holder is not None and live else None, int(token or 0))


def current_holder(url: str, name: str = DEPLOY) -> str | None:
    """Who holds the lock now (None: free, or the lease ran out)."""
    return state(url, name).holder


@dataclass
class Lease:
    """One hold of the lock: its holder name, its fencing token, and the heartbeat that renews it."""

    url: str
    holder: str
    token: int
    lease_seconds: float
    name: str = DEPLOY
    lost: str | None = None
    """Set by the heartbeat when a renewal found the lock taken: who took it."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def fence(self) -> None:
        """Before a serving change: check that this hold is still the lock's (and renew it), else
        :class:`LeaseLost`. The check is a conditional UPDATE, so it is as atomic as taking the lock."""
        if self.lost is None and renew(self.url, self.holder, self.token, self.lease_seconds, self.name):
            return
        other = current_holder(self.url, self.name)
        self.lost = self.lost or other or "nobody"
        taker = other or "another holder, whose lease has run out since"
        raise LeaseLost(
            f"lost the deploy lock to {taker} (this hold's token {self.token} is no longer current, its lease ran "
            f"out without renewal); nothing more was changed"
        )

    def start_heartbeat(self, interval: float | None = None) -> None:
        interval = heartbeat_interval(self.lease_seconds) if interval is None else interval
        self._thread = threading.Thread(
            target=self._beat, args=(interval,), name=f"clm-lock-heartbeat-{self.token}", daemon=True
        )
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                if renew(self.url, self.holder, self.token, self.lease_seconds, self.name):
                    continue
            except Exception:  # the database did not answer: try again next beat, the lease covers a few misses
                log.warning("deploy lock heartbeat of %s failed; retrying", self.holder, exc_info=True)
                continue
            self.lost = current_holder(self.url, self.name) or "nobody"
            log.error("deploy lock lost by %s to %s: its next serving change is refused", self.holder, self.lost)
            return

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


@contextmanager
def deploy_lock(
    url: str,
    label: str,
    *,
    wait_seconds: float,
    lease_seconds: float,
    poll_seconds: float = 0.05,
    name: str = DEPLOY,
    heartbeat_seconds: float | None = None,
) -> Iterator[Lease]:
    """Hold the lock for the ``with`` block, its lease renewed by a heartbeat; wait up to ``wait_seconds`` for it,
    else :class:`DeployBusyError`. Yields the :class:`Lease`: call its ``fence()`` before each serving change."""
    holder = holder_id(label)
    deadline = time.monotonic() + wait_seconds
    while (token := acquire(url, holder, lease_seconds, name)) is None:
        if time.monotonic() >= deadline:
            other = current_holder(url, name) or "another promotion or rollback"
            raise DeployBusyError(
                f"busy: {other} is changing what serves; waited {wait_seconds:.0f} s. Try again when it is done."
            )
        time.sleep(poll_seconds)
    lease = Lease(url, holder, token, lease_seconds, name)
    lease.start_heartbeat(heartbeat_seconds)
    try:
        yield lease
    finally:
        lease.stop_heartbeat()
        release(url, holder, name)
