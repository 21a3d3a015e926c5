"""API keys of the serving API: created and revoked by operators, stored hashed in clm's database.

A key reads ``clm_<prefix>_<secret>``: the prefix (8 hex digits) is public, shown in lists and used to find the
key; the secret is 32 random bytes. Only the sha256 of the whole key is stored. A slow password hash would buy
nothing here: the secret has 256 bits of entropy, so no dictionary can find it, and sha256 keeps every request
cheap. Hashes are compared with :func:`hmac.compare_digest`.

A slot checks the ``Authorization: Bearer`` key of each request with :class:`KeyCache`, which remembers what it
read for ``serving.api_key_cache_s`` seconds (5 by default): a revoke takes effect within that bound, and a
flood of requests does not become a flood of database reads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pwd
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from pydantic import computed_field
from sqlalchemy import select

from clm_lib import audit
from clm_lib.db import session_scope
from clm_lib.db.models import ServingApiKey, utcnow
from clm_lib.errors import ClmError

SCOPES = ("infer", "feedback", "ingest")
"""``infer``: completions, chat completions, models. ``feedback``: ``/v1/feedback``. ``ingest``: records pushed to
clm's ``POST /clm/api/v1/ingest`` (:mod:`clm_lib.data.push`), not a slot's route."""
_KEY = re.compile(r"^clm_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


def host_actor() -> str:
    """The operator behind a command run on the host: the OS account, which an environment variable cannot fake."""
    return f"cli:{pwd.getpwuid(os.getuid()).pw_name}"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """A key as clm shows it (never the secret, never the hash)."""

    id: int
    prefix: str
    owner: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None

    @computed_field
    @property
    def active(self) -> bool:
        """Not revoked: slots accept it."""
        return self.revoked_at is None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "prefix": self.prefix, "owner": self.owner, "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "revoked_by": self.revoked_by,
        }  # fmt: skip


def _info(row: ServingApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.prefix, row.owner, tuple(row.scopes), row.created_at, row.created_by,
                   row.revoked_at, row.revoked_by)  # fmt: skip


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"infer,feedback"`` -> ``("infer", "feedback")``; an unknown or missing scope is a ClmError."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        raise ClmError(f"scopes are a comma-separated subset of {', '.join(SCOPES)} (got {','.join(items) or '-'})")
    return tuple(s for s in SCOPES if s in items)


def create_key(url: str, *, owner: str, scopes: str | list[str], actor: str) -> tuple[KeyInfo, str]:
    """Store a new key; return it and its secret (the only time the secret exists outside the caller)."""
    owner = owner.strip()
    if not owner or len(owner) > 250:
        raise ClmError("a key needs an owner of 1 to 250 characters (a person, team or service)")
    wanted = parse_scopes(scopes)
    with session_scope(url) as s:
        while True:  # a prefix clash is one in four billion per key; draw again rather than fail
            prefix = secrets.token_hex(4)
            if s.scalar(select(ServingApiKey.id).where(ServingApiKey.prefix == prefix)) is None:
                break
        secret = f"clm_{prefix}_{secrets.token_urlsafe(32)}"
        row = ServingApiKey(prefix=prefix, key_hash=_hash(secret), owner=owner, scopes=list(wanted), created_by=actor)
        s.add(row)
        s.flush()
        audit.record(s, action="serving_key.create", target=f"serving_key:{row.id}", actor=actor,
                     to_value=",".join(wanted), reason=f"key clm_{prefix}_... for {owner}")  # fmt: skip
        return _info(row), secret


def list_keys(url: str, *, include_revoked: bool = True) -> list[KeyInfo]:
    with session_scope(url) as s:
        stmt = select(ServingApiKey).order_by(ServingApiKey.id)
        if not include_revoked:
            stmt = stmt.where(ServingApiKey.revoked_at.is_(None))
        return [_info(r) for r in s.scalars(stmt)]


def revoke_key(url: str, key_id: int, *, actor: str, reason: str = "") -> KeyInfo:
    """Revoke a key (slots refuse it within ``serving.api_key_cache_s``); revoking twice is an error."""
    with session_scope(url) as s:
        row = s.get(ServingApiKey, key_id)
        if row is None:
            raise ClmError(f"no API key with id {key_id} (see `clm keys list`)")
        if row.revoked_at is not None:
            raise ClmError(f"key {key_id} (clm_{row.prefix}_...) was already revoked by {row.revoked_by}")
        row.revoked_at, row.revoked_by = utcnow(), actor
        audit.record(s, action="serving_key.revoke", target=f"serving_key:{row.id}", actor=actor,
                     from_value="active", to_value="revoked", reason=reason or f"key of {row.owner}")  # fmt: skip
        return _info(row)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the key's owner and scopes, or an anonymous caller of a slot that needs no keys."""

    owner: str
    scopes: tuple[str, ...]
    key_id: int | None = None


ANONYMOUS = Caller("anonymous", SCOPES)


class KeyCache:
    """What clm's database says about the keys requests bring, remembered for ``ttl_s`` seconds.

    Misses (unknown prefixes) are remembered too, and the cache holds at most ``size`` prefixes, so random keys
    cost neither unbounded memory nor one database read each.
    """

    def __init__(self, url: str, ttl_s: float, size: int = 4096):
        self.url, self.ttl_s, self.size = url, ttl_s, size
        self._items: OrderedDict[str, tuple[float, tuple[str, Caller] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self, prefix: str) -> tuple[str, Caller] | None:
        with session_scope(self.url) as s:
            row = s.scalar(select(ServingApiKey).where(ServingApiKey.prefix == prefix))
            if row is None or row.revoked_at is not None:
                return None
            return row.key_hash, Caller(row.owner, tuple(row.scopes), row.id)

    def lookup(self, key: str) -> Caller | None:
        """The caller a key stands for, or None when it is malformed, unknown or revoked. Reads the database
        on a cache miss (blocking: call it from a thread)."""
        match = _KEY.match(key)
        if match is None:
            return None
        prefix = match.group(1)
        now = time.monotonic()
        with self._lock:
            cached = self._items.get(prefix)
        if cached is None or now - cached[0] > self.ttl_s:
            found = self._load(prefix)
            with self._lock:
                self._items[prefix] = (now, found)
                self._items.move_to_end(prefix)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        else:
            found = cached[1]
        if found is None or not hmac.compare_digest(found[0], _hash(key)):
            return None
        return found[1]

    def fresh(self, key: str) -> bool:
        """Whether :meth:`lookup` of ``key`` would be answered from memory (no database read)."""
        match = _KEY.match(key)
        if match is None:
            return True
        with self._lock:
            cached = self._items.get(match.group(1))
        return cached is not None and time.monotonic() - cached[0] <= self.ttl_s
