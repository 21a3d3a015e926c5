"""The Model registry screen and ``/clm/api/v1/models``, ``/aliases/history``: every model version with what made
it, the full history of the aliases, and two versions side by side.

- Versions: the union of what MLflow lists and what clm's database names (a training run's output, an evaluation,
  a gate decision, a deployment), so a version registered by hand, or one MLflow lost, still shows, marked. For
  each: the training run's lineage (:func:`clm_lib.reporting.report.run_lineage`), its parameters as MLflow logged
  them (:func:`clm_lib.registry.mlflow_registry.flat_params`), per-task scores, AA/BWT, the gate's decision, and
  whether the deployment history marks it (rolled back, rejected).
- Alias history: MLflow keeps none (mlflow#2169); every move goes through
  :func:`clm_lib.registry.mlflow_registry.move_alias` (the reconciler and registration included), which audits it as
  ``alias.<name>`` with target ``<model>@<name>``. Those entries are the history. Each alias's last audited move is
  set against what MLflow says now: a difference is a move made around clm.
- Compare: per-task scores, AA/BWT, and the changed fields of the two runs' effective configs
  (``config_versions.content``, stored with secrets already redacted) and parameters, as flat ``key -> (a, b)``.

Reading never creates a store; a missing clm database is an empty history, one that cannot be read a
:class:`~clm_lib.reporting.stores.StoreDown`. MLflow that cannot be read is a state the page shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import AuditEntry, ConfigVersion, Deployment, Evaluation, GateDecision, TrainingRun
from clm_lib.deploy.history import records
from clm_lib.deploy.plan import marks
from clm_lib.redaction import redact_text
from clm_lib.registry.aliases import ALL as ALIASES
from clm_lib.registry.mlflow_registry import flat_params
from clm_lib.reporting.lineage import Drawing, LineageGraph, known, layout, lineage_of
from clm_lib.reporting.overview import GateVerdict, RegistryState, registry_state
from clm_lib.reporting.params import PAGE_SIZE, BadFilter, int_arg, text_arg
from clm_lib.reporting.reads import database
from clm_lib.reporting.report import VERSION, Lineage, UnknownVersion, run_lineage, scores_of
from clm_lib.reporting.stores import StoreDown, utc

MAX_TEXT = 250
"""Longest actor filter: the longest actor the audit log holds."""


# --- versions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """A model version and everything recorded about how it was made and judged."""

    version: str
    aliases: list[str]
    """MLflow aliases on it now (empty when MLflow cannot be read)."""
    registered_at: datetime | None
    """When MLflow registered it (else when its training run finished)."""
    in_registry: bool | None
    """Whether MLflow has it (None: MLflow could not be read)."""
    mlflow_run_id: str | None
    run: Lineage | None
    """What the training run that produced it recorded: parent, config hash, Delta versions read, rows, tasks."""
    trigger: str | None
    """What started that run (asset: a drift check's retrain request; manual; demo; ...)."""
    params: dict[str, Any]
    """The run's parameters, as logged to MLflow."""
    scores: dict[str, float]
    """Task -> accuracy (0-100) on its held-out set."""
    average_accuracy: float | None
    backward_transfer: float | None
    gate: GateVerdict | None
    mark: str | None
    """Why the deployment history marks it (rolled back, rejected), when it does."""


@dataclass(frozen=True)
class VersionList:
    """One page of versions, newest first."""

    items: list[ModelVersion]
    total: int
    offset: int
    limit: int


def all_versions(s: Session | None, model_name: str, registry: RegistryState) -> list[str]:
    """Every version MLflow lists or clm's database names, newest first."""
    found = set(registry.versions or {})
    if s is not None:
        for column, where in (
            (TrainingRun.model_version, true()),
            (Evaluation.model_version, true()),
            (GateDecision.model_version, GateDecision.model_name == model_name),
            (Deployment.version, Deployment.model_name == model_name),
        ):
            found.update(v for v in s.scalars(select(column).where(column.is_not(None), where).distinct()))
    return sorted((v for v in found if VERSION.match(v)), key=int, reverse=True)


def versions_page(s: Session | None, model_name: str, registry: RegistryState, *, offset: int, limit: int
                  ) -> VersionList:  # fmt: skip
    every = all_versions(s, model_name, registry)
    return VersionList(views(s, model_name, registry, every[offset : offset + limit]), len(every), offset, limit)


def views(s: Session | None, model_name: str, registry: RegistryState, versions: list[str]) -> list[ModelVersion]:
    """:class:`ModelVersion` of each of ``versions``, in that order, read in one query per table."""
    runs: dict[str, TrainingRun] = {}
    evals: dict[str, Evaluation] = {}
    gates: dict[str, GateDecision] = {}
    marked: dict[str, str] = {}
    if s is not None and versions:
        for r in s.scalars(select(TrainingRun).where(TrainingRun.model_version.in_(versions))
                           .order_by(TrainingRun.started_at)):  # fmt: skip
            runs[r.model_version] = r  # oldest first: the newest run wins
        for e in s.scalars(select(Evaluation).where(Evaluation.model_version.in_(versions)).order_by(Evaluation.id)):
            evals[e.model_version] = e
        for g in s.scalars(
            select(GateDecision)
            .where(GateDecision.model_name == model_name, GateDecision.model_version.in_(versions))
            .order_by(GateDecision.id)
        ):
            gates[g.model_version] = g
        marked = {v: m.text for v, m in marks(records(s, model_name)).items()}
    listed = {} if registry.status == "empty" else registry.versions  # None: MLflow could not be read
    out = []
    for v in versions:
        run, ev, mv = runs.get(v), evals.get(v), (listed or {}).get(v)
        trigger = run.trigger.get("kind") if run is not None and isinstance(run.trigger, dict) else None
        out.append(ModelVersion(
            version=v, aliases=registry.aliases_by_version.get(v, []),
            registered_at=mv.registered_at if mv else utc(run.finished_at) if run else None,
            in_registry=None if listed is None else mv is not None,
            mlflow_run_id=mv.mlflow_run_id if mv else None,
            run=run_lineage(run) if run else None, trigger=str(trigger) if trigger else None,
            params=flat_params(run) if run else {}, scores=scores_of(ev) if ev else {},
            average_accuracy=float(ev.average_accuracy) if ev else None,
            backward_transfer=None if ev is None or ev.backward_transfer is None else float(ev.backward_transfer),
            gate=GateVerdict.of(gates.get(v)), mark=marked.get(v),
        ))  # fmt: skip
    return out


def list_versions(cfg: ClmConfig, *, offset: int = 0, limit: int = 50) -> tuple[VersionList, RegistryState]:
    """One page of every version, newest first, and MLflow's state as read for it."""
    registry = registry_state(cfg, versions=True)
    with database(cfg) as s:
        return versions_page(s, cfg.registry.model_name, registry, offset=offset, limit=limit), registry


def get_version(cfg: ClmConfig, version: str, registry: RegistryState | None = None) -> ModelVersion:
    """One version; :class:`~clm_lib.reporting.report.UnknownVersion` when neither clm's database nor MLflow has
    it."""
    version = str(version)
    if not VERSION.match(version):
        raise UnknownVersion(f"no model version {version[:40]!r}: versions are numbers")
    registry = registry or registry_state(cfg, versions=True)
    name = cfg.registry.model_name
    with database(cfg) as s:
        if (s is not None and known(s, name, version)) or version in (registry.versions or {}):
            return views(s, name, registry, [version])[0]
    raise UnknownVersion(f"no model version {version} of {name} (neither clm's database nor MLflow has it)")


# --- aliases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasMove:
    """One audited move of an alias: who pointed it where, when, why."""

    id: int
    """The audit entry's id."""
    at: datetime | None
    alias: str
    from_version: str | None
    """None: the alias did not exist."""
    to_version: str | None
    """None: the alias was deleted."""
    actor: str
    reason: str
    recorded_on_retry: bool
    """Written by a retry that found the alias already moved by a try killed before its audit entry committed."""


@dataclass(frozen=True)
class AliasNow:
    """An alias as MLflow has it now, against its last audited move."""

    alias: str
    version: str | None
    """Per MLflow (None: not set, or MLflow could not be read)."""
    last_move: AliasMove | None
    agrees: bool | None
    """MLflow points where the last audited move left it (None: MLflow could not be read)."""


@dataclass(frozen=True)
class AliasHistory:
    """Alias moves, newest first, ``limit`` from ``offset`` of ``total``."""

    items: list[AliasMove]
    total: int
    offset: int
    limit: int
    alias: str | None = None
    actor: str | None = None


def _move(e: AuditEntry) -> AliasMove:
    details = e.details if isinstance(e.details, dict) else {}
    return AliasMove(e.id, utc(e.at), e.action.removeprefix("alias."), e.from_value, e.to_value, e.actor,
                     e.reason or "", details.get("recorded_on_retry") is True)  # fmt: skip


def _moves_where(model_name: str, alias: str | None = None, actor: str | None = None, version: str | None = None):
    where = [AuditEntry.target.startswith(f"{model_name}@", autoescape=True)]
    where.append(AuditEntry.action == f"alias.{alias}" if alias else AuditEntry.action.startswith("alias."))
    if actor:
        where.append(AuditEntry.actor.icontains(actor, autoescape=True))
    if version:
        where.append((AuditEntry.to_value == version) | (AuditEntry.from_value == version))
    return where


def moves_page(s: Session | None, model_name: str, *, alias: str | None = None, actor: str | None = None,
               version: str | None = None, offset: int = 0, limit: int = 50) -> AliasHistory:  # fmt: skip
    actor = (actor or "").strip() or None
    if actor and len(actor) > MAX_TEXT:
        raise BadFilter("actor", f"at most {MAX_TEXT} characters")
    if s is None:
        return AliasHistory([], 0, offset, limit, alias, actor)
    where = _moves_where(model_name, alias, actor, version)
    total = s.scalar(select(func.count(AuditEntry.id)).where(*where)) or 0
    stmt = select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
    return AliasHistory([_move(e) for e in s.scalars(stmt)], int(total), offset, limit, alias, actor)


def alias_history(cfg: ClmConfig, *, alias: str | None = None, actor: str | None = None,
                  version: str | None = None, offset: int = 0, limit: int = 50) -> AliasHistory:  # fmt: skip
    """Every audited move of the model's aliases, newest first; ``alias`` exactly, ``actor`` anywhere in the name
    (case ignored), ``version`` moved to or from."""
    with database(cfg) as s:
        return moves_page(s, cfg.registry.model_name, alias=alias, actor=actor, version=version, offset=offset,
                          limit=limit)  # fmt: skip


def aliases_now(s: Session | None, model_name: str, registry: RegistryState) -> list[AliasNow]:
    """clm's aliases (and any other MLflow has), each with its last audited move and whether MLflow agrees."""
    readable = registry.status != "unreachable"
    current = {a: v for v, names in registry.aliases_by_version.items() for a in names}
    out = []
    for alias in [*ALIASES, *sorted(set(current) - set(ALIASES))]:
        last = None
        if s is not None:
            entry = s.scalars(select(AuditEntry).where(*_moves_where(model_name, alias))
                              .order_by(AuditEntry.id.desc()).limit(1)).first()  # fmt: skip
            last = _move(entry) if entry is not None else None
        version = current.get(alias)
        agrees = (version == (last.to_version if last else None)) if readable else None
        out.append(AliasNow(alias, version, last, agrees))
    return out


def current_aliases(cfg: ClmConfig) -> list[AliasNow]:
    """:func:`aliases_now` for ``cfg``'s model."""
    state = registry_state(cfg)
    with database(cfg) as s:
        return aliases_now(s, cfg.registry.model_name, state)


# --- compare ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One field that differs: its value in ``a`` and in ``b`` (``only_in`` names the side that has it at all)."""

    key: str
    a: Any
    b: Any
    only_in: str | None = None


@dataclass(frozen=True)
class TaskScores:
    task: str
    a: float | None
    b: float | None
    delta: float | None
    """b - a, in accuracy points."""


@dataclass(frozen=True)
class Comparison:
    generated_at: datetime
    model_name: str
    a: ModelVersion
    b: ModelVersion
    tasks: list[TaskScores]
    config: list[Change]
    """Changed fields of the two runs' effective configs (dotted keys)."""
    config_missing: list[str]
    """Versions whose config is not stored (no training run, or a run from before configs were kept)."""
    params: list[Change]
    registry_status: str
    registry_message: str


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty mappings are values."""
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def _shown(value: Any) -> Any:
    # Stored configs are redacted when written (SecretUrl); a value that still carries a credential is masked here.
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    """The fields of two nested mappings that differ, by dotted key."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if key in fa and key in fb:
            if fa[key] != fb[key]:
                out.append(Change(key, _shown(fa[key]), _shown(fb[key])))
        else:
            side = "a" if key in fa else "b"
            out.append(Change(key, _shown(fa.get(key)), _shown(fb.get(key)), side))
    return out


def compare(cfg: ClmConfig, a: str, b: str) -> Comparison:
    """Versions ``a`` and ``b`` side by side; :class:`~clm_lib.reporting.report.UnknownVersion` names one that
    neither clm's database nor MLflow has."""
    registry = registry_state(cfg, versions=True)
    va, vb = get_version(cfg, a, registry), get_version(cfg, b, registry)
    configs: dict[str, dict[str, Any] | None] = {}
    with database(cfg) as s:
        for view in (va, vb):
            stored = s.get(ConfigVersion, view.run.config_hash) if s is not None and view.run else None
            configs[view.version] = stored.content if stored is not None and isinstance(stored.content, dict) else None
    ca, cb = configs[va.version], configs[vb.version]
    same_hash = va.run is not None and vb.run is not None and va.run.config_hash == vb.run.config_hash
    changes = [] if same_hash or ca is None or cb is None else diff(ca, cb)
    tasks = []
    for task in list(dict.fromkeys([*va.scores, *vb.scores])):
        sa, sb = va.scores.get(task), vb.scores.get(task)
        tasks.append(TaskScores(task, sa, sb, None if sa is None or sb is None else round(sb - sa, 4)))
    return Comparison(
        generated_at=datetime.now(UTC), model_name=cfg.registry.model_name, a=va, b=vb, tasks=tasks, config=changes,
        config_missing=[v.version for v in (va, vb) if configs[v.version] is None and not same_hash],
        params=diff(va.params, vb.params), registry_status=registry.status, registry_message=registry.message,
    )  # fmt: skip


def shown_value(value: Any) -> str:
    """A config or parameter value as one line of text (absent: an em dash)."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


# --- the screens ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryPage:
    """Everything the Model registry screen shows; each part is also a REST route (same functions)."""

    generated_at: datetime
    model_name: str
    registry_status: str
    registry_message: str
    versions: VersionList | None
    aliases: list[AliasNow]
    history: AliasHistory | None
    problems: list[StoreDown] = field(default_factory=list)
    bad_filter: BadFilter | None = None

    @property
    def status(self) -> int:
        return 422 if self.bad_filter else 200


def build_registry(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> RegistryPage:
    """The Model registry screen for the query ``args``: ``offset`` of the versions; the alias history's ``alias``,
    ``actor`` and ``hoffset``. Never raises for a store that cannot be read nor for a bad argument."""
    args = args or {}
    bad = None
    try:
        offset = int_arg(args, "offset", 0, 0, 10_000_000)
        h_offset = int_arg(args, "hoffset", 0, 0, 10_000_000)
        alias, actor = text_arg(args, "alias"), text_arg(args, "actor")
    except BadFilter as exc:
        bad, offset, h_offset, alias, actor = exc, 0, 0, None, None
    registry = registry_state(cfg, versions=True)
    name = cfg.registry.model_name
    versions = history = None
    aliases: list[AliasNow] = []
    problems = []
    try:
        with database(cfg) as s:
            versions = versions_page(s, name, registry, offset=offset, limit=PAGE_SIZE)
            aliases = aliases_now(s, name, registry)
            history = moves_page(s, name, alias=alias, actor=actor, offset=h_offset, limit=PAGE_SIZE)
    except StoreDown as down:
        problems.append(down)
    except BadFilter as exc:
        bad = exc
    return RegistryPage(datetime.now(UTC), name, registry.status, registry.message, versions, aliases, history,
                        problems, bad)  # fmt: skip


@dataclass(frozen=True)
class VersionPage:
    """A version's screen: what made it and its lineage graph, drawn."""

    generated_at: datetime
    model_name: str
    version: ModelVersion
    lineage: LineageGraph
    drawing: Drawing
    moves: AliasHistory
    """Alias moves to or from this version."""
    registry_status: str
    registry_message: str


def build_version_page(cfg: ClmConfig, version: str) -> VersionPage:
    registry = registry_state(cfg, versions=True)
    view = get_version(cfg, version, registry)
    graph = lineage_of(cfg, view.version, registry=registry)
    moves = alias_history(cfg, version=view.version, limit=PAGE_SIZE)
    return VersionPage(datetime.now(UTC), cfg.registry.model_name, view, graph, layout(graph), moves,
                       registry.status, registry.message)  # fmt: skip


@dataclass(frozen=True)
class ComparePage:
    """The comparison screen: two versions side by side, or why not."""

    comparison: Comparison | None
    """None: fewer than two versions exist, or an argument was refused."""
    a: str
    """The versions asked for, as typed (for the form)."""
    b: str
    bad_filter: BadFilter | None = None

    @property
    def status(self) -> int:
        return 422 if self.bad_filter else 200


def build_compare(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> ComparePage:
    """The comparison the query asks for (``a`` and ``b``, by default the two newest versions). An argument that is
    not a version is a page that names it; a version nobody has raises UnknownVersion."""
    args = args or {}
    asked = {side: (args.get(side) or "").strip()[:40] for side in ("a", "b")}
    picked: dict[str, str | None] = {}
    for side, raw in asked.items():
        number = raw.removeprefix("v")
        if number and not VERSION.match(number):
            bad = BadFilter(side, f"{raw!r} is not a model version number")
            return ComparePage(None, asked["a"], asked["b"], bad)
        picked[side] = number or None
    if picked["a"] is None or picked["b"] is None:
        with database(cfg) as s:
            newest = all_versions(s, cfg.registry.model_name, registry_state(cfg, versions=True))[:3]
        if len(newest) < 2:
            return ComparePage(None, asked["a"], asked["b"])
        picked["b"] = picked["b"] or next(v for v in newest if v != picked["a"])
        picked["a"] = picked["a"] or next(v for v in newest if v != picked["b"])
    return ComparePage(compare(cfg, picked["a"], picked["b"]), picked["a"], picked["b"])


__all__ = [
    "AliasHistory", "AliasMove", "AliasNow", "Change", "ComparePage", "Comparison", "ModelVersion", "RegistryPage",
    "TaskScores", "VersionList", "VersionPage", "alias_history", "build_compare", "build_registry",
    "build_version_page", "compare", "current_aliases", "diff", "flatten", "get_version", "list_versions",
]  # fmt: skip
