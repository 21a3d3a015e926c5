"""IngestOperator on a real landing folder, lake and database: the curated counts travel in the Asset event, the
batch is recorded for the caller, and a run that curates nothing new skips (no event) with the reason."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from clm_lib import audit
from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.operators.ingest import IngestOperator
from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import IngestionBatch
from clm_lib.demo.stream import generate_task


class _Event:
    extra: dict | None = None


def _context() -> dict:
    return {
        "outlet_events": {CURATED: _Event()},
        "dag": SimpleNamespace(dag_id="clm_ingest"),
        "dag_run": SimpleNamespace(triggering_user_name="ada"),
    }


def _drop(cfg, name: str, n: int, bad: int = 0) -> None:
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in generate_task("routers", n, 1)] + ["{not json"] * bad
    (cfg.landing_dir / name).write_text("\n".join(lines) + "\n")


def test_new_rows_are_curated_recorded_and_announced(env_cfg):
    _drop(env_cfg, "tickets.jsonl", 30, bad=2)
    ctx = _context()

    batches = IngestOperator(task_id="ingest").execute(ctx)

    assert [b["status"] for b in batches] == ["committed"]
    curated = batches[0]["rows_curated"]
    assert curated > 0 and batches[0]["rows_quarantined"] == 2
    assert ctx["outlet_events"][CURATED].extra == {
        "batches": [batches[0]["batch_id"]],
        "rows_in": batches[0]["rows_in"],
        "rows_curated": curated,
        "rows_quarantined": 2,
        "rows_duplicate": batches[0]["rows_duplicate"],
    }
    assert lake.read_table(env_cfg, "curated").num_rows == curated
    with session_scope(env_cfg.database_url) as s:
        stored = s.get(IngestionBatch, batches[0]["batch_id"])
        assert (stored.status, stored.rows_curated) == ("committed", curated)
        assert audit.recent(s, action="ingest_batch")[0].actor == "airflow:ada"


def test_nothing_new_skips_with_the_reason_and_no_event(env_cfg):
    env_cfg.landing_dir.mkdir(parents=True)
    with pytest.raises(AirflowSkipException, match=r"no new curated rows \(0 file\(s\) ingested\)"):
        IngestOperator(task_id="ingest").execute(_context())

    _drop(env_cfg, "a.jsonl", 20)
    IngestOperator(task_id="ingest").execute(_context())
    _drop(env_cfg, "b.jsonl", 20)  # the same records again, in another file: all duplicates
    ctx = _context()
    with pytest.raises(AirflowSkipException, match=r"no new curated rows \(1 file\(s\) ingested\)"):
        IngestOperator(task_id="ingest").execute(ctx)

    assert ctx["outlet_events"][CURATED].extra is None
    with session_scope(env_cfg.database_url) as s:
        assert s.query(IngestionBatch).count() == 2
