"""Schema evolution on real Delta tables: new optional fields go to ``metadata``; older versions stay readable."""

import json
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import write_deltalake

from clm_lib.data import lake
from clm_lib.data.ingest import curated_rows_since, ingest_file
from clm_lib.data.records import CURATED_SCHEMA


def test_a_new_optional_field_lands_in_metadata_and_older_versions_read_the_same(lake_cfg, record, write_jsonl):
    first = ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "a.jsonl", [record(i) for i in range(3)]))
    later = [record(i, channel="chat", priority=i) for i in range(3, 6)]
    second = ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "b.jsonl", later))
    assert second.rows_curated == 3
    assert lake.read_table(lake_cfg, "curated").schema == CURATED_SCHEMA  # no new column: the extras are data
    new = curated_rows_since(lake_cfg, first.curated_version)
    assert sorted(json.loads(m)["priority"] for m in new["metadata"].to_pylist()) == [3, 4, 5]
    assert {json.loads(m)["channel"] for m in new["metadata"].to_pylist()} == {"chat"}
    old = lake.read_table(lake_cfg, "curated", version=first.curated_version)
    assert old.num_rows == 3 and set(old["metadata"].to_pylist()) == {"{}"}


def test_a_table_from_an_older_clm_gains_the_new_column_and_its_old_version_stays_readable(lake_cfg):
    older = CURATED_SCHEMA.remove(CURATED_SCHEMA.get_field_index("metadata"))  # clm before the metadata column
    now = pa.array([datetime(2026, 12, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    row = {
        "id": ["a"],
        "task": ["routers"],
        "prompt": ["p"],
        "response": ["r"],
        "split": ["train"],
        "source": ["s"],
        "batch_id": ["b0"],
        "line": [1],
        "ingested_at": now,
    }
    write_deltalake(lake.table_uri(lake_cfg, "curated"), pa.table(row).cast(older))
    newer = pa.table({**row, "id": ["b"], "batch_id": ["b1"], "metadata": ['{"ticket": 7}']})
    assert lake.append(lake_cfg, "curated", newer) == 1
    v0 = lake.read_table(lake_cfg, "curated", version=0)  # time travel to before the schema change
    assert v0.schema == CURATED_SCHEMA and v0.to_pylist()[0]["metadata"] == "{}"
    assert lake.read_table(lake_cfg, "curated", version=0, columns=["id", "metadata"]).to_pylist() == [
        {"id": "a", "metadata": "{}"}
    ]
    latest = lake.read_table(lake_cfg, "curated").sort_by("id")
    assert latest.schema == CURATED_SCHEMA
    assert latest["metadata"].to_pylist() == ["{}", '{"ticket": 7}']
