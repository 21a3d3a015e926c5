"""LakeMaintenanceOperator: the ``clm_lake_maintenance`` DAG's task per table, the same functions as
``clm data optimize`` and ``clm data vacuum`` (:mod:`clm_lib.data.maintenance`)."""

from __future__ import annotations

from typing import Any

from clm_lib.airflow.operators.base import ClmBaseOperator

LAKE_TABLES = ("raw", "curated", "quarantine", "replay", "eval")
"""``clm_lib.data.lake.TABLES``, spelled out: the DAG file must not import pyarrow at parse time (tests check both)."""


class LakeMaintenanceOperator(ClmBaseOperator):
    """Compact ``table``, then vacuum it with the configured retention, keeping every protected version."""

    def __init__(self, *, table: str, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context: Any) -> dict:
        from clm_lib.data.maintenance import optimize, vacuum

        cfg = self.cfg
        compacted = optimize(cfg, self.table)
        vacuumed = vacuum(cfg, self.table, dry_run=False)
        self.log.info("lake %s: compaction %s; vacuum deleted %d file(s) (retention %d h, kept versions %s)",
                      self.table, compacted.as_dict(), len(vacuumed.removed), vacuumed.retention_hours,
                      sorted(vacuumed.protected))  # fmt: skip
        for path in vacuumed.removed:
            self.log.info("deleted %s", path)
        return {"optimize": compacted.as_dict(), "vacuum": {**vacuumed.as_dict(), "removed": len(vacuumed.removed)}}
