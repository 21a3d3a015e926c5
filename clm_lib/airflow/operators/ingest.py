"""IngestOperator: land files -> validated, versioned Delta rows, announced as an Asset event."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.operators.base import ClmBaseOperator


class IngestOperator(ClmBaseOperator):
    """Ingest every file in the landing folder. Skips (no Asset event) when nothing new was curated."""

    def __init__(self, **kwargs):
        kwargs.setdefault("outlets", [CURATED])
        super().__init__(**kwargs)

    def execute(self, context: Any) -> list[dict]:
        from clm_lib.data.ingest import ingest_landing

        self.quiet_libraries()
        batches = [b.as_dict() for b in ingest_landing(self.cfg, actor=self.actor(context))]
        curated = sum(b["rows_curated"] for b in batches)
        for b in batches:
            self.log.info("batch %s from %s: %s", b["batch_id"], b["source"], b)
        if not curated:
            raise AirflowSkipException(f"no new curated rows ({len(batches)} file(s) ingested)")
        context["outlet_events"][CURATED].extra = {
            "batches": [b["batch_id"] for b in batches],
            "rows_in": sum(b["rows_in"] for b in batches),
            "rows_curated": curated,
            "rows_quarantined": sum(b["rows_quarantined"] for b in batches),
            "rows_duplicate": sum(b["rows_duplicate"] for b in batches),
        }
        return batches
