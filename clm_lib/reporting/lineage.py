"""A model version's lineage as a graph: data batch → curated version → training run → model version → deployment.

Every arrow is a fact clm's database recorded, none is inferred from timing:

- a committed ingestion batch records the curated Delta version its append made (``ingestion_batches.curated_version``;
  a batch whose rows were all duplicates or quarantined wrote nothing to curated and feeds nothing);
- a training run records the curated range its new rows came from (``previous_curated_version`` exclusive to
  ``curated_version`` inclusive, :func:`clm_lib.data.ingest.curated_rows_since`), the replay buffer version it mixed
  in and the model version it was fine-tuned from;
- the run records the model version registered from its output;
- a deployment records the version it brought to traffic.

:func:`lineage_of` is what the registry screen draws (:func:`layout`: columns per stage, every coordinate computed
here), what ``GET /clm/api/v1/models/{version}/lineage`` returns and what the end-to-end cycle test checks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import Deployment, Evaluation, GateDecision, IngestionBatch, TrainingRun
from clm_lib.reporting.display import clip
from clm_lib.reporting.overview import RegistryState, registry_state
from clm_lib.reporting.reads import database
from clm_lib.reporting.report import VERSION, UnknownVersion
from clm_lib.reporting.stores import utc

STAGES = ("batch", "input", "run", "model", "deployment")
"""The graph's columns, left to right: every edge goes from one stage to the next."""
STAGE_TITLES = {
    "batch": "Data batches",
    "input": "Data versions · parent",
    "run": "Training run",
    "model": "Model version",
    "deployment": "Deployments",
}
MAX_PER_STAGE = 12
"""Batches and deployments shown at most; the rest are one "+N more" node (the newest are kept)."""


@dataclass(frozen=True)
class Node:
    id: str
    """``<kind>:<key>``, unique in the graph."""
    kind: str
    """batch, curated, replay, parent, run, model, deployment, or more (the batches or deployments left out)."""
    stage: str
    """Which of :data:`STAGES` (the column it is drawn in)."""
    key: str
    """The batch id, Delta version, training run id, model version or deployment id."""
    label: str
    detail: str
    status: str | None = None
    """What the row says about itself (a batch's or run's status, a deployment's, a version's gate verdict)."""
    at: datetime | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    """committed, trained on, replayed, fine-tuned from, registered, promotion or rollback."""


@dataclass(frozen=True)
class LineageGraph:
    model_name: str
    version: str
    training_run_id: str | None
    """The run that produced the version (None: registered outside clm's training, or the run row is gone)."""
    nodes: list[Node]
    edges: list[Edge]
    omitted: dict[str, int] = field(default_factory=dict)
    """Stage -> nodes left out of it (:data:`MAX_PER_STAGE`)."""
    notes: list[str] = field(default_factory=list)
    """What the graph cannot show, in words."""

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def reaches(self, source: str, target: str) -> bool:
        """Whether a path of edges leads from node ``source`` to node ``target``."""
        nxt: dict[str, list[str]] = {}
        for e in self.edges:
            nxt.setdefault(e.source, []).append(e.target)
        seen, todo = {source}, deque([source])
        while todo:
            here = todo.popleft()
            if here == target:
                return True
            for t in nxt.get(here, []):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for n in out["nodes"]:
            n["at"] = n["at"].isoformat() if n["at"] else None
        return out


def lineage_of(cfg: ClmConfig, version: str, *, registry: RegistryState | None = None) -> LineageGraph:
    """The lineage graph of model ``version``. Raises :class:`~clm_lib.reporting.report.UnknownVersion` when neither
    clm's database nor MLflow knows it, :class:`~clm_lib.reporting.stores.StoreDown` when the database cannot be
    read. ``registry``: MLflow as the caller already read it, to spare the calls (MLflow gives the aliases, and
    says whether a version clm's database does not know exists)."""
    version = str(version)
    if not VERSION.match(version):
        raise UnknownVersion(f"no model version {version[:40]!r}: versions are numbers")
    registry = registry or registry_state(cfg)
    name = cfg.registry.model_name
    with database(cfg) as s:
        if s is not None and known(s, name, version):
            return _graph(s, cfg, version, registry)
    if registry.versions is None:
        registry = registry_state(cfg, versions=True)
    if version in (registry.versions or {}):
        return _unrecorded(cfg, version, registry)
    raise UnknownVersion(f"no model version {version} of {name} (neither clm's database nor MLflow has it)")


def known(s: Session, model_name: str, version: str) -> bool:
    """Whether clm's database names ``version``: a run produced it, an evaluation scored it, the gate decided on it,
    or a deployment moved it."""
    return any(
        s.scalar(select(func.count()).select_from(model).where(where)) or 0
        for model, where in (
            (TrainingRun, TrainingRun.model_version == version),
            (Evaluation, Evaluation.model_version == version),
            (GateDecision, (GateDecision.model_name == model_name) & (GateDecision.model_version == version)),
            (Deployment, (Deployment.model_name == model_name) & (Deployment.version == version)),
        )
    )


def _unrecorded(cfg: ClmConfig, version: str, registry: RegistryState) -> LineageGraph:
    model = _model_node(version, registry, None)
    note = (f"clm's database has no record of v{version}: it was registered in MLflow without clm's training "
            "pipeline, so nothing says which data made it.")  # fmt: skip
    return LineageGraph(cfg.registry.model_name, version, None, [model], [], notes=[note])


def _model_node(version: str, registry: RegistryState, gate: GateDecision | None) -> Node:
    aliases = registry.aliases_by_version.get(version, [])
    verdict = None if gate is None else ("gate passed" if gate.passed else "gate failed")
    detail = " · ".join([*aliases, verdict or "gate not decided"])
    status = None if gate is None else ("passed" if gate.passed else "failed")
    return Node(f"model:{version}", "model", "model", version, f"v{version}", detail, status)


def _graph(s: Session, cfg: ClmConfig, version: str, registry: RegistryState) -> LineageGraph:
    name = cfg.registry.model_name
    nodes: list[Node] = []
    edges: list[Edge] = []
    omitted: dict[str, int] = {}
    notes: list[str] = []
    run = s.scalars(
        select(TrainingRun).where(TrainingRun.model_version == version).order_by(TrainingRun.started_at.desc())
    ).first()
    gate = s.scalars(
        select(GateDecision)
        .where(GateDecision.model_name == name, GateDecision.model_version == version)
        .order_by(GateDecision.id.desc())
    ).first()
    model = _model_node(version, registry, gate)
    if run is None:
        notes.append(f"No training run names v{version} as its output: where its data came from is not recorded.")
    else:
        run_node = _run_node(run)
        _inputs(s, run, run_node, nodes, edges, omitted, notes)
        nodes.append(run_node)
        edges.append(Edge(run_node.id, model.id, "registered"))
    nodes.append(model)
    _deployments(s, name, version, model, nodes, edges, omitted)
    return LineageGraph(name, version, run.id if run else None, nodes, edges, omitted, notes)


def _run_node(run: TrainingRun) -> Node:
    trigger = run.trigger.get("kind") if isinstance(run.trigger, dict) else None
    rows = f"{run.new_rows or 0:,} new, {run.replay_rows or 0:,} replay"
    return Node(f"run:{run.id}", "run", "run", run.id, run.id, f"{trigger or run.status} · {rows}", run.status,
                utc(run.started_at))  # fmt: skip


def _inputs(s: Session, run: TrainingRun, run_node: Node, nodes: list[Node], edges: list[Edge],
            omitted: dict[str, int], notes: list[str]) -> None:  # fmt: skip
    """Batches → curated versions → the run; the replay buffer and the parent version → the run."""
    upto, after = run.curated_version, run.previous_curated_version
    fed: list[IngestionBatch] = []
    if upto is not None:
        stmt = select(IngestionBatch).where(
            IngestionBatch.status == "committed",
            IngestionBatch.rows_curated > 0,
            IngestionBatch.curated_version.is_not(None),
            IngestionBatch.curated_version <= upto,
        )
        if after is not None:
            stmt = stmt.where(IngestionBatch.curated_version > after)
        # Newest first, so the cap keeps the batches closest to the run.
        fed = list(s.scalars(stmt.order_by(IngestionBatch.curated_version.desc(), IngestionBatch.id)))
    else:
        notes.append(f"Training run {run.id} recorded no curated version.")
    shown, rest = fed[:MAX_PER_STAGE], fed[MAX_PER_STAGE:]
    versions = sorted({b.curated_version for b in shown} | ({upto} if upto is not None else set()), reverse=True)
    for b in shown:
        nodes.append(_batch_node(b))
    if rest:
        omitted["batch"] = len(rest)
        older = {b.curated_version for b in rest} - set(versions)
        more = Node("more:batch", "more", "batch", "batch", f"+{len(rest)} earlier batches",
                    _span({b.curated_version for b in rest}))
        nodes.append(more)
        if older:
            omitted["input"] = len(older)
            more_versions = Node("more:curated", "more", "input", "curated", f"+{len(older)} earlier versions",
                                 _span(older))  # fmt: skip
            nodes.append(more_versions)
            edges.append(Edge(more.id, more_versions.id, "committed"))
            edges.append(Edge(more_versions.id, run_node.id, "trained on"))
        else:  # their versions are among those shown
            for v in sorted({b.curated_version for b in rest}):
                edges.append(Edge(more.id, f"curated:{v}", "committed"))
    for v in versions:
        new = after is None or v > after
        detail = "new rows" if new else "read as of this version"
        nodes.append(Node(f"curated:{v}", "curated", "input", str(v), f"curated v{v}", detail))
        edges.append(Edge(f"curated:{v}", run_node.id, "trained on"))
    for b in shown:
        edges.append(Edge(f"batch:{b.id}", f"curated:{b.curated_version}", "committed"))
    if run.replay_version is not None:
        nodes.append(Node(f"replay:{run.replay_version}", "replay", "input", str(run.replay_version),
                          f"replay v{run.replay_version}", f"{_rows(run.replay_rows)} mixed in"))  # fmt: skip
        edges.append(Edge(f"replay:{run.replay_version}", run_node.id, "replayed"))
    if run.parent_model_version:
        p = run.parent_model_version
        nodes.append(Node(f"parent:{p}", "parent", "input", p, f"v{p}", "parent: fine-tuned from"))
        edges.append(Edge(f"parent:{p}", run_node.id, "fine-tuned from"))


def _batch_node(b: IngestionBatch) -> Node:
    name = PurePosixPath(b.source.replace("\\", "/")).name or b.source
    return Node(f"batch:{b.id}", "batch", "batch", b.id, name, f"{_rows(b.rows_curated)} curated · {b.id[:8]}",
                b.status, utc(b.started_at))  # fmt: skip


def _span(versions: set[int]) -> str:
    lo, hi = min(versions), max(versions)
    return f"curated v{lo}" if lo == hi else f"curated v{lo} to v{hi}"


def _rows(n: int | None) -> str:
    return f"{n or 0:,} row{'' if n == 1 else 's'}"


def _deployments(s: Session, name: str, version: str, model: Node, nodes: list[Node], edges: list[Edge],
                 omitted: dict[str, int]) -> None:  # fmt: skip
    deps = list(s.scalars(
        select(Deployment).where(Deployment.model_name == name, Deployment.version == version)
        .order_by(Deployment.id.desc())
    ))  # fmt: skip
    for d in deps[:MAX_PER_STAGE]:
        node = Node(f"deployment:{d.id}", "deployment", "deployment", str(d.id), f"#{d.id} {d.kind}",
                    f"{d.status.replace('_', ' ')} · from {('v' + d.from_version) if d.from_version else 'nothing'}",
                    d.status, utc(d.started_at))  # fmt: skip
        nodes.append(node)
        edges.append(Edge(model.id, node.id, d.kind))
    if len(deps) > MAX_PER_STAGE:
        omitted["deployment"] = len(deps) - MAX_PER_STAGE
        more = Node("more:deployment", "more", "deployment", "deployment",
                    f"+{len(deps) - MAX_PER_STAGE} earlier deployments", "on the Serving screen")  # fmt: skip
        nodes.append(more)
        edges.append(Edge(model.id, more.id, "deployed"))


# --- the drawing -------------------------------------------------------------------------------------------

BOX_W, BOX_H = 178, 42
GAP_X, GAP_Y = 54, 12
PAD, HEAD = 6, 26
LABEL_CHARS, DETAIL_CHARS = 24, 30
"""What fits a box at the page's 12/11 px fonts."""


@dataclass(frozen=True)
class Box:
    node: Node
    x: float
    y: float
    label: str
    """Cut to fit; the node's full text is the box's hover title."""
    detail: str
    current: bool
    """The version whose lineage this is."""


@dataclass(frozen=True)
class Link:
    d: str
    """SVG path (a cubic curve from the source's right side to the target's left side)."""
    title: str
    kind: str
    """The edge's label as a CSS-safe word."""


@dataclass(frozen=True)
class Column:
    stage: str
    title: str
    x: float
    count: int


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    box_w: int
    box_h: int
    columns: list[Column]
    boxes: list[Box]
    links: list[Link]


def layout(graph: LineageGraph) -> Drawing:
    """Columns per stage, boxes stacked and centred in their column, curves between them."""
    by_stage: dict[str, list[Node]] = {st: [n for n in graph.nodes if n.stage == st] for st in STAGES}
    rows = max((len(v) for v in by_stage.values()), default=1) or 1
    body = rows * BOX_H + (rows - 1) * GAP_Y
    height = HEAD + body + 2 * PAD
    width = len(STAGES) * BOX_W + (len(STAGES) - 1) * GAP_X + 2 * PAD
    boxes: dict[str, Box] = {}
    columns = []
    for i, stage in enumerate(STAGES):
        x = PAD + i * (BOX_W + GAP_X)
        stack = by_stage[stage]
        columns.append(Column(stage, STAGE_TITLES[stage], x, len(stack)))
        used = len(stack) * BOX_H + max(0, len(stack) - 1) * GAP_Y
        top = HEAD + PAD + (body - used) / 2
        for j, n in enumerate(stack):
            boxes[n.id] = Box(n, x, top + j * (BOX_H + GAP_Y), clip(n.label, LABEL_CHARS), clip(n.detail, DETAIL_CHARS),
                              n.kind == "model" and n.key == graph.version)  # fmt: skip
    links = []
    for e in graph.edges:
        a, b = boxes.get(e.source), boxes.get(e.target)
        if a is None or b is None:
            continue
        x1, y1, x2, y2 = a.x + BOX_W, a.y + BOX_H / 2, b.x, b.y + BOX_H / 2
        mid = (x1 + x2) / 2
        d = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        links.append(Link(d, f"{a.node.label} → {e.label} → {b.node.label}", e.label.replace(" ", "-")))
    return Drawing(int(width), int(height), BOX_W, BOX_H, columns, list(boxes.values()), links)
