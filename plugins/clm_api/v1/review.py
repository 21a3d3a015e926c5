"""The review queue and the serving API's keys: ``/clm/api/v1/review``, ``/review/accept|reject``, ``/keys``.

Corrections that serving clients send wait in quarantine (reason ``pending_review``) until an operator accepts
them (they are published to the landing folder and curated by the next ingest) or rejects them, with a reason
(:mod:`clm_lib.serving.review`). API keys are created and revoked by operators; a new key's secret is in the
answer to its creation and nowhere else, ever (:mod:`clm_lib.serving.keys`). Every decision is audited with the
caller's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import OPERATE, READ, ActorDep, ConfigDep, Page, PageDep, operate
from clm_lib.errors import ClmError
from clm_lib.reporting.review import queue
from clm_lib.reporting.stores import reading
from clm_lib.serving.keys import KeyInfo
from clm_lib.serving.review import ReviewItem

router = APIRouter(tags=["review"])

REVIEW = operate("clm_ingest")
"""Accepting a correction makes it data for the next ingest: the right to trigger ``clm_ingest`` decides."""
MAX_ID = 2**63 - 1
MAX_IDS = 500


class ReviewQueueOut(Page[ReviewItem]):
    """Text fields are as the clients sent them: escape them before display."""

    counts: dict[str, int]
    """Corrections by status: pending_review, accepted, rejected."""


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=MAX_IDS)
    """Feedback ids (``GET /v1/review``); all of them are decided, or none."""
    reason: str = Field(default="", max_length=2000)
    """Why: kept in the audit log with the caller's name. Required to reject."""


class DecisionOut(BaseModel):
    decision: Literal["accepted", "rejected"]
    items: list[ReviewItem]
    landing_file: str | None = None
    """Accepted: the file in the landing folder the next ingest curates them from."""


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=250, pattern=r"\S")
    """Who uses it: a person, team or service."""
    scopes: list[Literal["infer", "feedback", "ingest"]] = Field(default=["infer"], min_length=1, max_length=3)


@dataclass(frozen=True)
class KeyCreated(KeyInfo):
    """A new key: :class:`~clm_lib.serving.keys.KeyInfo` and, in this one answer only, the key itself."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    secret: str
    """The key itself, ``clm_<prefix>_<secret>``. Shown this once: clm keeps only its hash."""


class KeyRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


def _database(cfg) -> None:
    """StoreDown (503) for a database that is missing or down: the keys and review functions would create an
    empty SQLite file, or fail with a driver error."""
    with reading(cfg.database_url):
        pass


def _check_pending(cfg, ids: list[int]) -> None:
    """404 for ids that name no feedback, 409 for feedback that is not (or no longer) pending review."""
    from clm_lib.serving.review import PENDING, items

    _database(cfg)
    found = {i.id: i.status for i in items(cfg, ids)}
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise HTTPException(404, f"no feedback #{', #'.join(map(str, unknown[:20]))}")
    done = [f"#{i}: {found[i]}" for i in ids if found[i] != PENDING]
    if done:
        raise HTTPException(409, f"not pending review, nothing decided ({'; '.join(done[:20])})")


@router.get("/review", dependencies=READ, response_model=ReviewQueueOut)
def review_queue(cfg: ConfigDep, page: PageDep) -> dict[str, Any]:
    """Corrections waiting for review, oldest first, and how many were accepted and rejected."""
    q = queue(cfg, offset=page.offset, limit=page.limit, decided=0)
    return {"items": q.items, "total": q.total, "offset": q.offset, "limit": q.limit, "counts": q.counts}


@router.post("/review/accept", dependencies=REVIEW, response_model=DecisionOut)
def accept(cfg: ConfigDep, body: Decision, actor: ActorDep) -> dict[str, Any]:
    """Accept corrections: published to the landing folder as one JSONL file the next ingest curates."""
    from clm_lib.serving import review

    ids = sorted(set(body.ids))
    _check_pending(cfg, ids)
    try:
        accepted, path = review.accept(cfg, ids, actor=actor, reason=body.reason.strip())
    except ClmError as exc:  # decided by someone else in between
        raise HTTPException(409, str(exc)) from None
    return {"decision": "accepted", "items": accepted, "landing_file": path.rsplit("/", 1)[-1]}


@router.post("/review/reject", dependencies=REVIEW, response_model=DecisionOut)
def reject(cfg: ConfigDep, body: Decision, actor: ActorDep) -> dict[str, Any]:
    """Reject corrections (they never reach training); ``reason`` is required."""
    from clm_lib.serving import review

    if not body.reason.strip():
        raise HTTPException(422, [{"loc": ["body", "reason"], "msg": "say why the corrections are rejected",
                                   "type": "missing"}])  # fmt: skip
    ids = sorted(set(body.ids))
    _check_pending(cfg, ids)
    try:
        rejected = review.reject(cfg, ids, actor=actor, reason=body.reason.strip())
    except ClmError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"decision": "rejected", "items": rejected}


@router.get("/keys", dependencies=OPERATE, response_model=list[KeyInfo])
def list_keys(
    cfg: ConfigDep, revoked: Annotated[bool, Query(description="Include revoked keys.")] = True
) -> list[KeyInfo]:
    """The serving API's keys (prefix, owner, scopes, who created or revoked them), oldest first."""
    from clm_lib.serving.keys import list_keys as keys

    _database(cfg)
    return keys(cfg.database_url, include_revoked=revoked)


@router.post("/keys", dependencies=OPERATE, response_model=KeyCreated, status_code=201)
def create_key(cfg: ConfigDep, body: KeyCreate, actor: ActorDep) -> KeyCreated:
    """A new key for the serving API. The answer holds its secret, the only time it is shown."""
    from clm_lib.serving.keys import create_key as create

    _database(cfg)
    try:
        info, secret = create(cfg.database_url, owner=body.owner, scopes=list(body.scopes), actor=actor)
    except ClmError as exc:
        raise HTTPException(422, str(exc)) from None
    return KeyCreated(**vars(info), secret=secret)


@router.post("/keys/{key_id}/revoke", dependencies=OPERATE, response_model=KeyInfo)
def revoke_key(
    cfg: ConfigDep,
    actor: ActorDep,
    key_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The key's id (GET /v1/keys).")],
    body: KeyRevoke | None = None,
) -> KeyInfo:
    """Revoke a key: slots refuse it within ``serving.api_key_cache_s``. 404 for an unknown id, 409 when it is
    already revoked."""
    from clm_lib.serving.keys import list_keys as keys
    from clm_lib.serving.keys import revoke_key as revoke

    _database(cfg)
    known = {k.id: k for k in keys(cfg.database_url)}
    if key_id not in known:
        raise HTTPException(404, f"no API key #{key_id}")
    try:
        info = revoke(cfg.database_url, key_id, actor=actor, reason=(body.reason.strip() if body else ""))
    except ClmError as exc:
        raise HTTPException(409, str(exc)) from None
    return info
