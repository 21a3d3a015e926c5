"""The data screens' small lake (:func:`tests.clm_lib.reporting.data_lake.build_lake`) plus a third file whose only
bad record has a hostile task: its failing value is markup no screen may render.

Imported by the validation reporting, REST and view tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clm_lib.data.ingest import BatchResult, ingest_file
from tests.clm_lib.reporting.data_lake import HOSTILE, Lake, _record, _write, build_lake


@dataclass
class ValidationLake:
    lake: Lake
    hostile: BatchResult
    """``hostile.jsonl``: 2 curated, 1 quarantined as ``unknown_task`` with task :data:`HOSTILE`."""

    @property
    def cfg(self):
        return self.lake.cfg


def build_validation_lake(home: Path) -> ValidationLake:
    lake = build_lake(home)
    hostile = ingest_file(lake.cfg, _write(lake.cfg.landing_dir / "hostile.jsonl", [
        _record(21), _record(22, task="billing"), {**_record(23), "task": HOSTILE},
    ]))  # fmt: skip
    return ValidationLake(lake, hostile)
