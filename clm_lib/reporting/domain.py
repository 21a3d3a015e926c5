"""Domain adaptations for the Continual strategy screen and ``/clm/api/v1/strategy/domain``.

Each domain-adapted base (``clm adapt-domain``, :mod:`clm_lib.training.domain`) lives in its own folder under
``<models>/domain``, with its before/after comparison (:mod:`clm_lib.evaluation.domain_comparison`). Nothing is
re-derived here: the comparisons are read as stored and shown, newest first, with whether the base in use is one of
them. Their contents are files on disk, so every string is escaped by the template that renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clm_lib.config import ClmConfig
from clm_lib.evaluation.domain_comparison import DOMAIN_DIR, load_comparisons
from clm_lib.reporting.schema import DOCUMENTED


@dataclass(frozen=True)
class DomainTaskRow:
    """One task scored on the base before and the adapted base after."""

    __pydantic_config__ = DOCUMENTED

    task: str
    group: str
    """``original`` (a task the model knew) or ``new`` (a task of the new domain)."""
    accuracy_before: float
    """Exact match on held-out records, 0-100, with the original base."""
    accuracy_after: float
    """The same with the adapted base."""
    accuracy_change: float
    """After minus before, in points."""
    loss_before: float
    """Mean cross-entropy per response token with the original base."""
    loss_after: float
    n: int
    """Held-out records scored."""


@dataclass(frozen=True)
class DomainAdaptation:
    """One adapted base and its comparison."""

    __pydantic_config__ = DOCUMENTED

    base_after: str
    """Folder of the adapted base."""
    base_before: str
    """Folder of the base it was adapted from."""
    created_at: str
    """When the comparison was made (UTC, ISO 8601)."""
    adapter: str | None
    """The task adapter both bases were scored with, or ``None`` (the bases alone)."""
    text_loss_before: float | None
    """Held-out loss on the domain's raw text with the original base."""
    text_loss_after: float | None
    """The same with the adapted base."""
    mean_change_original: float | None
    """Mean accuracy change of the original tasks, in points."""
    mean_change_new: float | None
    """Mean accuracy change of the new domain's tasks, in points."""
    in_use: bool
    """Whether ``model.base_path`` points at this adapted base."""
    tasks: list[DomainTaskRow] = field(default_factory=list)


@dataclass(frozen=True)
class DomainAdaptations:
    """Every stored domain adaptation, newest first."""

    __pydantic_config__ = DOCUMENTED

    folder: str
    """Where adapted bases are looked for."""
    adaptations: list[DomainAdaptation] = field(default_factory=list)


def domain_adaptations(cfg: ClmConfig) -> DomainAdaptations:
    """The comparisons stored under ``<models>/domain``."""
    folder = cfg.models_dir / DOMAIN_DIR
    in_use = _resolved(cfg.base_model_dir)
    out = []
    for c in load_comparisons(folder):
        rows = [
            DomainTaskRow(t.task, t.group, t.accuracy_before, t.accuracy_after, t.accuracy_change, t.loss_before,
                          t.loss_after, t.n)
            for t in c.tasks
        ]  # fmt: skip
        out.append(
            DomainAdaptation(
                base_after=c.base_after,
                base_before=c.base_before,
                created_at=c.created_at,
                adapter=c.adapter,
                text_loss_before=c.text_loss_before,
                text_loss_after=c.text_loss_after,
                mean_change_original=c.mean_change("original"),
                mean_change_new=c.mean_change("new"),
                in_use=_resolved(Path(c.base_after)) == in_use,
                tasks=rows,
            )
        )
    return DomainAdaptations(folder=str(folder), adaptations=out)


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)
