from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clm_lib.data import lake
from clm_lib.data.records import CURATED_SCHEMA
from clm_lib.errors import ClmError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def curated_rows(ids: list[str], split: str = "train") -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "task": ["routers"] * n,
            "prompt": [f"prompt {i}" for i in ids],
            "response": ["ok"] * n,
            "split": [split] * n,
            "source": ["test"] * n,
            "batch_id": ["b1"] * n,
            "line": list(range(1, n + 1)),
            "ingested_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "metadata": ["{}"] * n,
        }
    )


def test_a_table_never_written_reads_empty_with_its_schema(lake_cfg):
    assert lake.table_version(lake_cfg, "curated") is None
    assert lake.read_table(lake_cfg, "curated").schema == CURATED_SCHEMA
    assert lake.read_table(lake_cfg, "quarantine", columns=["reason"]).column_names == ["reason"]
    assert lake.history(lake_cfg, "raw") == []
    assert lake.table_uri(lake_cfg, "raw") == f"{lake_cfg.lake_uri}/raw"


def test_append_makes_versions_and_time_travel_reads_them(lake_cfg):
    assert lake.append(lake_cfg, "curated", curated_rows(["a", "b"])) == 0
    assert lake.append(lake_cfg, "curated", curated_rows(["c"], split="eval")) == 1
    assert lake.read_table(lake_cfg, "curated", version=0)["id"].to_pylist() == ["a", "b"]
    latest = lake.read_table(lake_cfg, "curated")
    assert sorted(latest["id"].to_pylist()) == ["a", "b", "c"] and latest.schema == CURATED_SCHEMA
    only_eval = lake.read_table(lake_cfg, "curated", columns=["id"], where=pc.field("split") == "eval")
    assert only_eval.to_pylist() == [{"id": "c"}]
    assert [h["version"] for h in lake.history(lake_cfg, "curated")] == [1, 0]


def test_idempotent_append_commits_once(lake_cfg):
    first = lake.append(lake_cfg, "curated", curated_rows(["a"]), app_id="clm.ingest.b1", txn_version=1)
    again = lake.append(lake_cfg, "curated", curated_rows(["a"]), app_id="clm.ingest.b1", txn_version=1)
    assert first == again == 0
    assert lake.read_table(lake_cfg, "curated").num_rows == 1
    assert len(lake.history(lake_cfg, "curated")) == 1
    # A later transaction version of the same app is a new commit.
    assert lake.append(lake_cfg, "curated", curated_rows(["b"]), app_id="clm.ingest.b1", txn_version=2) == 1


def test_overwrite_keeps_the_old_version_readable(lake_cfg):
    lake.append(lake_cfg, "replay", curated_rows(["a", "b"]))
    assert lake.overwrite(lake_cfg, "replay", curated_rows(["z"])) == 1
    assert lake.read_table(lake_cfg, "replay")["id"].to_pylist() == ["z"]
    assert lake.read_table(lake_cfg, "replay", version=0).num_rows == 2


def test_rows_must_fit_the_table(lake_cfg):
    with pytest.raises(ClmError, match="unknown column"):
        lake.append(lake_cfg, "curated", curated_rows(["a"]).append_column("extra", pa.array([1])))
    with pytest.raises(ClmError, match="lack required column 'split'"):
        lake.append(lake_cfg, "curated", curated_rows(["a"]).drop_columns(["split"]))
    with pytest.raises(ClmError, match="unknown lake table 'nope'"):
        lake.read_table(lake_cfg, "nope")
    assert lake.table_version(lake_cfg, "curated") is None  # nothing was written


def test_missing_version_is_a_clear_error(lake_cfg):
    with pytest.raises(ClmError, match="does not exist yet"):
        lake.read_table(lake_cfg, "curated", version=0)
    lake.append(lake_cfg, "curated", curated_rows(["a"]))
    with pytest.raises(ClmError, match=r"no readable version 5 \(latest is 0\)"):
        lake.read_table(lake_cfg, "curated", version=5)
