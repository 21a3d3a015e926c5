"""Configuration revisions: ``/clm/api/v1/config...``: the live one, its history, diffs, preview, save and revert.

The same functions as the Configuration screen and ``clm config`` (:mod:`clm_lib.reporting.config` over
:mod:`clm_lib.config_store`). Reading needs the Viewer role. Preview, save and revert need the right to trigger
``clm_promotion``: most of what a revision changes (bake window, canary steps, safety rules, the gate's budget)
decides what a promotion does, so whoever may start one may change how it runs; changes are audited with the
caller's reason. A value that breaks a rule: 422 naming the field's path and the rule; an edit from a revision
that is no longer live: 409 naming the newer one; an unknown revision: 404; clm's database unreadable: 503.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, PageDep, operate
from clm_lib.reporting import config as report
from clm_lib.reporting.next_promotion import PROMOTION_DAG
from clm_lib.reporting.stores import reading

router = APIRouter(tags=["config"])

T = TypeVar("T")
OPERATE_CONFIG = operate(PROMOTION_DAG)
MAX_REVISION = 2**31 - 1
Number = Annotated[int, Path(ge=1, le=MAX_REVISION, description="A revision number (see GET /v1/config/revisions).")]
MAX_VALUE_CHARS = 20_000
"""A value longer than this as JSON is refused (a 422 naming it): no configuration field needs more."""


def _bounded(changes: dict[str, Any]) -> dict[str, Any]:
    too_long = [p for p, v in changes.items() if len(json.dumps(v, default=str)) > MAX_VALUE_CHARS]
    if too_long:
        raise ValueError(f"values longer than {MAX_VALUE_CHARS} characters as JSON: {', '.join(too_long[:5])}")
    return changes


Changes = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=200)], Any],
    Field(min_length=1, max_length=200, description='Field path -> new value, e.g. {"deploy.bake_seconds": 30}.'),
    AfterValidator(_bounded),
]


def _answer(call: Callable[[Any, Any], T]) -> T:
    """Run ``call(session, file_cfg)`` on clm's database; clm's refusals become 404/409/422."""
    from clm_lib.airflow.settings import resolve_file_config
    from clm_lib.config_store import ConfigChangeError, ConfigConflict, RevisionNotFound

    file_cfg = resolve_file_config()
    try:
        with reading(file_cfg.database_url) as session:
            return call(session, file_cfg)
    except RevisionNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ConfigChangeError as exc:
        raise HTTPException(422, [{"loc": ["body", "changes", path], "msg": rule, "type": "config_rule"}
                                  for path, rule in exc.problems]) from None  # fmt: skip


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: Changes


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: Changes
    base_revision: int = Field(ge=1, le=MAX_REVISION, description="The revision you edited (a newer live one: 409).")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="Why: kept with the revision and "
                        "in the audit log.")  # fmt: skip


class RevertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(ge=1, le=MAX_REVISION, description="The revision whose values become live again.")
    base_revision: int = Field(ge=1, le=MAX_REVISION, description="The live revision you saw (a newer one: 409).")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="Why: kept with the revision and "
                        "in the audit log.")  # fmt: skip


@router.get("/config", dependencies=READ, response_model=report.ConfigView)
def live_config() -> Any:
    """The live revision, field by field and by section; read-only fields say why, secrets are never shown. Also
    the run-time fields the file sets differently (not used: the live revision decides them)."""
    return _answer(lambda s, f: report.config_view(s, f))


@router.get("/config/revisions", dependencies=READ, response_model=report.RevisionList)
def revisions(page: PageDep) -> Any:
    """Revisions, newest first: who saved each, when, why, and what it changed against the one before."""
    return _answer(lambda s, f: report.revision_list(s, f, offset=page.offset, limit=page.limit))


@router.get("/config/revisions/{number}", dependencies=READ, response_model=report.ConfigView)
def revision(number: Number) -> Any:
    """Revision ``number``'s whole configuration (with today's file for what revisions do not hold)."""
    return _answer(lambda s, f: report.config_view(s, f, number))


@router.get("/config/diff", dependencies=READ, response_model=report.RevisionDiff)
def diff(
    a: Annotated[int, Query(ge=1, le=MAX_REVISION, description="From this revision.")],
    b: Annotated[int, Query(ge=1, le=MAX_REVISION, description="To this revision.")],
) -> Any:
    """The fields that differ from revision ``a`` to revision ``b``."""
    return _answer(lambda s, f: report.revision_diff(s, f, a, b))


@router.post("/config/preview", dependencies=OPERATE_CONFIG, response_model=report.ConfigPreview)
def preview(body: PreviewRequest) -> Any:
    """What saving ``changes`` would change against the live revision, and what it would have changed: the gate's
    verdicts on stored candidates, drift verdicts a new alpha would flip. Stores nothing."""
    return _answer(lambda s, f: report.preview(s, f, body.changes))


@router.post("/config", dependencies=OPERATE_CONFIG, response_model=report.RevisionInfo, status_code=201)
def save(body: SaveRequest, actor: ActorDep) -> Any:
    """Save ``changes`` as a new revision on top of ``base_revision``; DAG runs that start from now on use it.
    Audited as ``config.changed``."""
    return _answer(lambda s, f: report.save(s, f, changes=body.changes, base_revision=body.base_revision,
                                            actor=actor, reason=body.reason))  # fmt: skip


@router.post("/config/revert", dependencies=OPERATE_CONFIG, response_model=report.RevisionInfo, status_code=201)
def revert(body: RevertRequest, actor: ActorDep) -> Any:
    """Make revision ``to``'s values live again, as a new revision. Audited as ``config.reverted``."""
    return _answer(lambda s, f: report.revert(s, f, to=body.to, base_revision=body.base_revision, actor=actor,
                                              reason=body.reason))  # fmt: skip
