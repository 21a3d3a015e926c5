"""A window of records as the detectors see it: prompts, tasks, responses (and ids), with bad values kept visible.

Built from a curated Arrow table, a list of records, or plain lists. A value that is not a usable string (None,
NaN from pandas, a number) becomes None and is counted, never silently turned into an empty string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa


def _clean(values: Iterable[Any]) -> np.ndarray:
    return np.array([v if isinstance(v, str) else None for v in values], dtype=object)


@dataclass(frozen=True)
class TextWindow:
    prompts: np.ndarray
    """Object array of str or None (a row with no usable prompt)."""
    tasks: np.ndarray
    responses: np.ndarray | None = None
    """None when the window carries no labels at all."""
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.prompts)
        for name in ("tasks", "responses", "ids"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"window column {name} has {len(col)} values for {n} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    # --- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_lists(
        cls,
        prompts: Sequence[Any],
        tasks: Sequence[Any] | None = None,
        responses: Sequence[Any] | None = None,
        ids: Sequence[Any] | None = None,
    ) -> TextWindow:
        n = len(prompts)
        return cls(
            prompts=_clean(prompts),
            tasks=_clean(tasks if tasks is not None else [None] * n),
            responses=None if responses is None else _clean(responses),
            ids=None if ids is None else np.array([str(i) for i in ids], dtype=object),
        )

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> TextWindow:
        has_response = any("response" in r for r in records)
        has_id = bool(records) and all("id" in r for r in records)
        return cls.from_lists(
            [r.get("prompt") for r in records],
            [r.get("task") for r in records],
            [r.get("response") for r in records] if has_response else None,
            [r["id"] for r in records] if has_id else None,
        )

    @classmethod
    def from_table(cls, table: pa.Table | None) -> TextWindow:
        if table is None:
            return cls.from_lists([])
        cols = set(table.column_names)
        if "prompt" not in cols:
            raise ValueError(f"a drift window needs a 'prompt' column; got {sorted(cols)}")

        def col(name: str) -> list[Any] | None:
            return table.column(name).to_pylist() if name in cols else None

        return cls.from_lists(col("prompt"), col("task"), col("response"), col("id"))

    @classmethod
    def coerce(cls, data: TextWindow | pa.Table | Sequence[Mapping[str, Any]] | None) -> TextWindow:
        """Accept what callers have at hand: a window, an Arrow table, or a list of record dicts."""
        if isinstance(data, TextWindow):
            return data
        if data is None or isinstance(data, pa.Table):
            return cls.from_table(data)
        return cls.from_records(list(data))

    # --- views ----------------------------------------------------------------------------------------
    def take(self, index: np.ndarray) -> TextWindow:
        return TextWindow(
            prompts=self.prompts[index],
            tasks=self.tasks[index],
            responses=None if self.responses is None else self.responses[index],
            ids=None if self.ids is None else self.ids[index],
        )

    def sample(self, n: int, rng: np.random.Generator) -> TextWindow:
        """A uniform subsample without replacement of ``n`` rows (all rows when the window is smaller)."""
        if len(self) <= n:
            return self
        return self.take(np.sort(rng.choice(len(self), size=n, replace=False)))

    def usable(self) -> TextWindow:
        """Only the rows whose prompt is a string."""
        mask = np.array([p is not None for p in self.prompts], dtype=bool)
        return self if mask.all() else self.take(np.flatnonzero(mask))

    @property
    def missing_prompts(self) -> int:
        return int(sum(p is None for p in self.prompts))

    def to_table(self) -> pa.Table:
        """Columns ``id, task, prompt, response`` (what the evaluation scorers take); ids are made up if absent."""
        ids = self.ids if self.ids is not None else np.array([f"row-{i}" for i in range(len(self))], dtype=object)
        responses = self.responses if self.responses is not None else np.full(len(self), None, dtype=object)
        return pa.table(
            {
                "id": pa.array(ids.tolist(), pa.string()),
                "task": pa.array(self.tasks.tolist(), pa.string()),
                "prompt": pa.array(self.prompts.tolist(), pa.string()),
                "response": pa.array(responses.tolist(), pa.string()),
            }
        )
