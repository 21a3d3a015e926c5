"""Before/after a domain adaptation: the original tasks and the new domain's tasks, on the base and the adapted base.

Domain adaptation (:mod:`clm_lib.training.domain`) moves the base. That may help the new domain's tasks and cost
the original ones (their adapters were trained on the old base's features). :func:`compare_bases` scores both
groups of held-out records with :func:`clm_lib.evaluation.metrics.score_tasks` on the base before and the adapted
base after, each with the same task adapter when one is given (the champion's: what serving would answer with if
only the base changed), and :func:`save_comparison` stores the result as JSON next to the adapted base, where
:func:`load_comparisons` finds it for the API and the screens. No database table: the comparison belongs to the
adapted base's folder, like its ``clm_domain.json``.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

COMPARISON_FILE = "clm_domain_comparison.json"
DOMAIN_DIR = "domain"
"""Sub-folder of ``paths.models`` where ``clm adapt-domain`` writes adapted bases by default (and screens look)."""


@dataclass(frozen=True)
class TaskChange:
    """One task's score on the base before and the adapted base after."""

    task: str
    group: str
    """``original`` (a task the current model knows) or ``new`` (a task of the new domain)."""
    accuracy_before: float
    accuracy_after: float
    loss_before: float
    """Mean cross-entropy per response token."""
    loss_after: float
    n: int

    @property
    def accuracy_change(self) -> float:
        return round(self.accuracy_after - self.accuracy_before, 2)


@dataclass(frozen=True)
class DomainComparison:
    base_before: str
    base_after: str
    adapter: str | None
    """The task adapter both bases were scored with, or ``None`` (the bases alone)."""
    tasks: list[TaskChange] = field(default_factory=list)
    text_loss_before: float | None = None
    """Held-out raw-text loss of the domain text, from the adapted base's record."""
    text_loss_after: float | None = None
    created_at: str = ""

    def mean_change(self, group: str) -> float | None:
        """Mean accuracy change (points) over the tasks of ``group``, or ``None`` when it has none."""
        changes = [t.accuracy_change for t in self.tasks if t.group == group]
        return round(statistics.fmean(changes), 2) if changes else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row, task in zip(out["tasks"], self.tasks, strict=True):
            row["accuracy_change"] = task.accuracy_change
        out["mean_change"] = {g: self.mean_change(g) for g in ("original", "new")}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainComparison:
        fields = {f for f in TaskChange.__dataclass_fields__}
        tasks = [TaskChange(**{k: v for k, v in t.items() if k in fields}) for t in data.get("tasks", [])]
        keep = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "tasks"}
        return cls(**keep, tasks=tasks)


def compare_bases(
    base_before: str | Path,
    base_after: str | Path,
    *,
    original: pa.Table | None,
    new: pa.Table | None,
    adapter_dir: str | Path | None = None,
    max_examples_per_task: int = 200,
    batch_size: int = 64,
    max_length: int | None = None,
) -> DomainComparison:
    """Score ``original`` and ``new`` held-out records (columns ``id, task, prompt, response``) on both bases."""
    from clm_lib.evaluation.metrics import score_tasks
    from clm_lib.modeling.load import load_model
    from clm_lib.training.domain import read_record

    groups = {name: table for name, table in (("original", original), ("new", new)) if table is not None}

    def score(base: str | Path) -> dict[str, dict]:
        model, tokenizer = load_model(base, adapter_dir)
        out = {}
        for name, table in groups.items():
            scores = score_tasks(
                model,
                tokenizer,
                table,
                max_examples_per_task=max_examples_per_task,
                batch_size=batch_size,
                max_length=max_length,
            )
            out[name] = scores
        return out

    before, after = score(base_before), score(base_after)
    tasks = []
    for name in groups:
        for task, b in before[name].items():
            a = after[name][task]
            tasks.append(
                TaskChange(
                    task=task,
                    group=name,
                    accuracy_before=round(b.accuracy, 2),
                    accuracy_after=round(a.accuracy, 2),
                    loss_before=round(b.loss, 5),
                    loss_after=round(a.loss, 5),
                    n=b.n,
                )
            )
    record = read_record(base_after) or {}
    return DomainComparison(
        base_before=str(base_before),
        base_after=str(base_after),
        adapter=str(adapter_dir) if adapter_dir is not None else None,
        tasks=tasks,
        text_loss_before=record.get("heldout_loss_before"),
        text_loss_after=record.get("heldout_loss_after"),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def save_comparison(comparison: DomainComparison, base_after: str | Path) -> Path:
    """Write ``clm_domain_comparison.json`` into the adapted base's folder (replacing an earlier one)."""
    path = Path(base_after) / COMPARISON_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(comparison.to_dict(), indent=2))
    tmp.replace(path)
    return path


def load_comparisons(root: str | Path) -> list[DomainComparison]:
    """Every stored comparison in a folder of adapted bases (``<models>/domain``), newest first; an unreadable
    file is skipped (it is data on disk, not something a screen should fail on)."""
    root = Path(root)
    out = []
    for path in sorted(root.glob(f"*/{COMPARISON_FILE}")) if root.is_dir() else []:
        try:
            out.append(DomainComparison.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda c: c.created_at, reverse=True)
