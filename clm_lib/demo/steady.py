"""A drop that should not start a retraining: fresh tickets of the product lines the model already knows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from clm_lib.demo.stream import generate_task, write_records


def write_steady_drop(out_dir: str | Path, tasks: Sequence[str], n: int, seed: int, index: int) -> Path:
    """``n`` new tickets spread evenly over ``tasks``, in the same mix the model was trained on.

    Drawn with another ``seed`` than the earlier drops, so the rows are new (a repeat would only count as a
    duplicate) but come from the same distribution: the drift detectors should stay quiet and, with fewer rows
    than ``drift.volume.min_new_rows``, so should the volume trigger.
    """
    if not tasks:
        raise ValueError("a steady drop needs at least one known task")
    records = [r for task in tasks for r in generate_task(task, n // len(tasks), seed)]
    random.Random(seed).shuffle(records)
    return write_records(Path(out_dir) / f"{index:02d}_more_of_the_same.jsonl", records, "jsonl")
