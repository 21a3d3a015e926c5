"""An s3:// landing location, against moto's real S3 HTTP server on loopback (started and stopped here)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import ingest, lake, landing_s3
from clm_lib.data.ingest import ingest_landing
from clm_lib.db import upgrade
from tests.s3 import use_s3

BUCKET = "drops"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    with use_s3(monkeypatch, s3_endpoint, BUCKET) as client:
        yield client


@pytest.fixture
def make_s3_cfg(tmp_path, s3):
    """``make_s3_cfg(lake=None, landing=..., **data)``: the shipped config with an s3:// landing place."""

    def make(*, lake_uri: str | None = None, landing: str = f"s3://{BUCKET}/landing", **data):
        environ = {"CLM_HOME": str(tmp_path / "home"), "CLM__PATHS__LANDING": landing}
        if lake_uri:
            environ["CLM_DATA_URI"] = lake_uri
        environ.update({f"CLM__DATA__{k.upper()}": json.dumps(v) for k, v in data.items()})
        cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ)
        upgrade(cfg.database_url)
        return cfg

    return make


@pytest.fixture
def s3_cfg(make_s3_cfg):
    cfg = make_s3_cfg()
    assert cfg.landing_uri == f"s3://{BUCKET}/landing"
    return cfg


def _jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _keys(s3, prefix="landing/") -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def test_objects_are_ingested_and_moved_like_files(s3_cfg, s3, record):
    s3.put_object(Bucket=BUCKET, Key="landing/a.jsonl", Body=_jsonl([record(1), record(2), record(1)]))
    table = pa.Table.from_pylist([record(3, task="billing")])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=BUCKET, Key="landing/b.parquet", Body=sink.getvalue())
    s3.put_object(Bucket=BUCKET, Key="landing/c.parquet", Body=b"not parquet at all")
    s3.put_object(Bucket=BUCKET, Key="landing/.uploading.jsonl", Body=_jsonl([record(9)]))  # hidden: left
    s3.put_object(Bucket=BUCKET, Key="landing/notes.txt", Body=b"not data")
    s3.put_object(Bucket=BUCKET, Key="landing/sub/d.jsonl", Body=_jsonl([record(8)]))  # not directly under

    results = ingest_landing(s3_cfg)
    by_name = {r.source.rsplit("/", 1)[-1]: r for r in results}
    assert by_name["a.jsonl"].source == f"s3://{BUCKET}/landing/a.jsonl"
    assert (by_name["a.jsonl"].rows_in, by_name["a.jsonl"].rows_curated, by_name["a.jsonl"].rows_duplicate) == (3, 2, 1)
    assert by_name["b.parquet"].rows_curated == 1
    assert by_name["c.parquet"].status == "failed" and "not a readable Parquet file" in by_name["c.parquet"].error
    assert _keys(s3) == {
        "landing/.uploading.jsonl", "landing/notes.txt", "landing/sub/d.jsonl",
        "landing/processed/a.jsonl", "landing/processed/b.parquet",
        "landing/failed/c.parquet", "landing/failed/c.parquet.error.txt",
    }
    note = s3.get_object(Bucket=BUCKET, Key="landing/failed/c.parquet.error.txt")["Body"].read().decode()
    assert "not a readable Parquet file" in note
    assert lake.read_table(s3_cfg, "curated").num_rows == 3
    assert ingest_landing(s3_cfg) == []  # nothing left to ingest

    # The same bytes dropped again: the same batch, skipped, and moved aside under a tagged name.
    s3.put_object(Bucket=BUCKET, Key="landing/a.jsonl", Body=_jsonl([record(1), record(2), record(1)]))
    (again,) = ingest_landing(s3_cfg)
    assert again.status == "skipped" and again.batch_id == by_name["a.jsonl"].batch_id
    assert f"landing/processed/a.{again.batch_id}.jsonl" in _keys(s3)


def test_an_object_over_the_cap_or_with_a_hostile_name_is_quarantined_unread(make_s3_cfg, s3, record):
    cfg = make_s3_cfg(max_file_bytes=200)
    s3.put_object(Bucket=BUCKET, Key="landing/big.jsonl", Body=_jsonl([record(i) for i in range(10)]))
    s3.put_object(Bucket=BUCKET, Key="landing/evil\x1b[31m.jsonl", Body=_jsonl([record(1)]))
    results = ingest_landing(cfg)
    assert sorted(r.quarantine_reasons.popitem()[0] for r in results) == ["file_too_large", "special_file_refused"]
    assert all(r.rows_in == r.rows_quarantined == 1 and r.refused for r in results)
    assert _keys(s3) == {"landing/failed/big.jsonl", "landing/failed/big.jsonl.error.txt",
                         "landing/failed/evil_[31m.jsonl", "landing/failed/evil_[31m.jsonl.error.txt"}
    quarantine = lake.read_table(cfg, "quarantine")
    assert quarantine.num_rows == 2 and quarantine["prompt"].null_count == 2  # no content kept
    assert lake.table_version(cfg, "raw") is None


def test_an_object_replaced_after_it_was_listed_is_not_half_read_and_waits_for_the_next_run(
        s3_cfg, s3, record, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key="landing/a.jsonl", Body=_jsonl([record(1)]))
    listed = landing_s3.S3Landing.list

    def list_then_replace(self, *args):
        found = listed(self, *args)
        s3.put_object(Bucket=BUCKET, Key="landing/a.jsonl", Body=_jsonl([record(1), record(2)]))
        return found

    with monkeypatch.context() as m:
        m.setattr(landing_s3.S3Landing, "list", list_then_replace)
        assert ingest_landing(s3_cfg) == []
    assert lake.table_version(s3_cfg, "raw") is None and _keys(s3) == {"landing/a.jsonl"}
    (result,) = ingest_landing(s3_cfg)
    assert (result.rows_in, result.rows_curated) == (2, 2)  # the new version, whole
    assert _keys(s3) == {"landing/processed/a.jsonl"}


def test_a_version_that_arrives_while_the_first_is_ingested_stays_to_be_ingested(s3_cfg, s3, record, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key="landing/a.jsonl", Body=_jsonl([record(1)]))
    move = landing_s3.S3Landing.move

    def replace_then_move(self, obj, *args):
        s3.put_object(Bucket=BUCKET, Key=obj.key, Body=_jsonl([record(5), record(6)]))
        return move(self, obj, *args)

    with monkeypatch.context() as m:
        m.setattr(landing_s3.S3Landing, "move", replace_then_move)
        (first,) = ingest_landing(s3_cfg)
    assert (first.status, first.rows_curated) == ("committed", 1)
    assert _keys(s3) == {"landing/a.jsonl"}  # the new version was neither moved nor deleted unread
    (second,) = ingest_landing(s3_cfg)
    assert (second.rows_in, second.rows_curated) == (2, 2) and second.batch_id != first.batch_id
    assert lake.read_table(s3_cfg, "curated").num_rows == 3


def test_a_missing_bucket_is_an_ingest_error(make_s3_cfg):
    with pytest.raises(ingest.IngestError, match="does not exist"):
        ingest_landing(make_s3_cfg(landing="s3://no-such-bucket/landing"))
