"""The model registry: ``/clm/api/v1/models`` (every version with what made it), ``/models/{version}``, its
``/lineage`` graph, ``/models/compare``, and the alias history MLflow does not keep (``/aliases``,
``/aliases/history``).

The same functions as the Model registry screen: :mod:`clm_lib.reporting.registry` and
:mod:`clm_lib.reporting.lineage`. A version neither clm's database nor MLflow has: 404 naming it. clm's database
that cannot be read: 503 naming it and since when. MLflow that cannot be read is not an error: versions come from
clm's database, and ``registry_status`` / ``registry_message`` say why aliases are missing.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from clm_api.deps import READ, ConfigDep, PageDep
from clm_api.v1 import answers
from clm_lib.reporting import registry
from clm_lib.reporting.lineage import LineageGraph, lineage_of
from clm_lib.reporting.registry import AliasHistory, AliasNow, Comparison, ModelVersion
from clm_lib.reporting.report import UnknownVersion

router = APIRouter(tags=["registry"], dependencies=READ)

_VERSION = {"max_length": 32, "pattern": r"^[0-9]+$"}
_ALIAS = r"^[A-Za-z0-9_-]+$"
VersionPath = Annotated[str, Path(**_VERSION, description="A model version, e.g. 3.")]
answer = partial(answers.answer, not_found=(UnknownVersion,))
"""An unknown version is a 404, a bad filter a 422 (``StoreDown`` is the app's 503)."""


class ModelsPage(BaseModel):
    """One page of model versions, newest first."""

    items: list[ModelVersion]
    total: int
    offset: int
    limit: int
    registry_status: str
    """ok, empty (nothing registered yet) or unreachable (versions then come from clm's database alone)."""
    registry_message: str


@router.get("/models", response_model=ModelsPage)
def models(cfg: ConfigDep, page: PageDep) -> ModelsPage:
    """Every model version MLflow lists or clm's database names, newest first: aliases, training run (parent,
    config hash, Delta versions read, rows), parameters, per-task scores, AA/BWT, the gate's decision, and whether
    the deployment history marks it rolled back or rejected."""
    versions, state = answer(lambda: registry.list_versions(cfg, offset=page.offset, limit=page.limit))
    return ModelsPage(items=versions.items, total=versions.total, offset=versions.offset, limit=versions.limit,
                      registry_status=state.status, registry_message=state.message)  # fmt: skip


@router.get("/models/compare", response_model=Comparison)
def compare(
    cfg: ConfigDep,
    a: Annotated[str, Query(**_VERSION, description="One version.")],
    b: Annotated[str, Query(**_VERSION, description="The version to set against it.")],
) -> Comparison:
    """Two versions side by side: per-task scores and their difference (b - a), and the fields of the two training
    runs' configs and parameters that differ (dotted keys; configs are stored without secrets)."""
    return answer(lambda: registry.compare(cfg, a, b))


@router.get("/models/{version}", response_model=ModelVersion)
def model(cfg: ConfigDep, version: VersionPath) -> ModelVersion:
    """One version with what made it and how it was judged; 404 names a version nobody has."""
    return answer(lambda: registry.get_version(cfg, version))


@router.get("/models/{version}/lineage", response_model=LineageGraph)
def lineage(cfg: ConfigDep, version: VersionPath) -> LineageGraph:
    """The version's lineage as nodes and edges: ingestion batches → the curated Delta versions they committed →
    the training run (with the replay buffer version and the parent version it read) → this version → the
    deployments that brought it to traffic. Each node's ``stage`` is its column on the screen."""
    return answer(lambda: lineage_of(cfg, version))


@router.get("/aliases", response_model=list[AliasNow])
def aliases(cfg: ConfigDep) -> list[AliasNow]:
    """Each alias as MLflow has it now, its last audited move, and whether the two agree (a difference is a move
    made around clm)."""
    return registry.current_aliases(cfg)


@router.get("/aliases/history", response_model=AliasHistory)
def alias_history(
    cfg: ConfigDep,
    page: PageDep,
    alias: Annotated[str | None, Query(max_length=64, pattern=_ALIAS, description="e.g. champion.")] = None,
    actor: Annotated[str | None, Query(max_length=registry.MAX_TEXT, description="Part of who moved it.")] = None,
    version: Annotated[str | None, Query(**_VERSION, description="Moved to or from this version.")] = None,
) -> AliasHistory:
    """Every move of the model's aliases (champion, challenger, previous, ...), newest first: who, when, from which
    version to which, and why. MLflow keeps no alias history; clm's audit log does."""
    return answer(lambda: registry.alias_history(cfg, alias=alias, actor=actor, version=version,
                                                 offset=page.offset, limit=page.limit))  # fmt: skip
