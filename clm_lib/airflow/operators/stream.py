"""StreamIngestOperator: the Kafka topic -> validated, versioned Delta rows, exactly once, announced as an Asset
event."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.operators.base import ClmBaseOperator


class StreamIngestOperator(ClmBaseOperator):
    """Consume ``ingest.kafka.topic`` from the group's committed offsets, one micro-batch per partition per poll
    window (``clm_lib/data/stream.py``). Skips (no Asset event) when Kafka ingestion is off or nothing new was
    curated. Safe to retry after any failure, a kill -9 included: a retry adds nothing already committed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("outlets", [CURATED])
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict:
        from clm_lib.data.stream import consume

        cfg = self.cfg
        if not cfg.ingest.kafka.enabled:
            raise AirflowSkipException("Kafka ingestion is off (ingest.kafka.enabled: false)")
        self.quiet_libraries()
        triggered_by = [e.extra for events in (context.get("triggering_asset_events") or {}).values()
                        for e in events][:5]  # fmt: skip
        if triggered_by:
            self.log.info("woken by watcher events (first %d): %s", len(triggered_by), triggered_by)
        result = consume(cfg, actor=self.actor(context)).as_dict()
        for w in result["windows"]:
            self.log.info("window: %d in, %d curated, %d quarantined, %d duplicate, %d already committed; "
                          "offsets %s", w["messages"], w["curated"], w["quarantined"], w["duplicates"],
                          w["already_committed"], w["offsets"])
        if not result["curated"]:
            raise AirflowSkipException(f"no new curated rows ({result['messages']} message(s) consumed)")
        context["outlet_events"][CURATED].extra = {
            "batches": [b["batch_id"] for w in result["windows"] for b in w["batches"] if b["batch_id"]],
            "rows_in": result["messages"],
            "rows_curated": result["curated"],
            "rows_quarantined": result["quarantined"],
            "rows_duplicate": result["duplicates"],
            "source": f"kafka:{result['topic']}",
        }
        return result
