"""The lake itself on object storage (issue #14, item 4): Delta tables on moto's real S3 HTTP server on loopback
(started and stopped by the ``s3_endpoint`` fixture), written with the concurrent-writer setting clm configures
(``aws_conditional_put: etag``, :func:`clm_lib.data.lake.storage_options`): ingestion, versions and restore work as on
a local folder, and writers racing on one table lose no commit."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_landing
from clm_lib.data.versions import restore
from clm_lib.db import upgrade
from tests.s3 import use_s3

BUCKET = "lake"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    with use_s3(monkeypatch, s3_endpoint, BUCKET) as client:
        yield client


@pytest.fixture
def s3_lake_cfg(tmp_path, s3):
    environ = {
        "CLM_HOME": str(tmp_path / "home"),
        "CLM_DATA_URI": f"s3://{BUCKET}/lake",
        "CLM__PATHS__LANDING": f"s3://{BUCKET}/landing",
    }
    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ)
    upgrade(cfg.database_url)
    return cfg


def _drop(s3, name: str, records) -> None:
    body = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    s3.put_object(Bucket=BUCKET, Key=f"landing/{name}", Body=body)


def test_the_concurrent_writer_setting_is_on_for_an_s3_lake(s3_lake_cfg):
    assert lake.table_uri(s3_lake_cfg, "curated") == f"s3://{BUCKET}/lake/curated"
    assert lake.storage_options(s3_lake_cfg)["aws_conditional_put"] == "etag"


def test_ingestion_versions_and_restore_on_an_s3_lake(s3_lake_cfg, s3, record):
    _drop(s3, "a.jsonl", [record(1), record(2), {"prompt": "no response"}])
    (first,) = ingest_landing(s3_lake_cfg)
    assert (first.rows_curated, first.rows_quarantined) == (2, 1)
    after_first = lake.table_version(s3_lake_cfg, "curated")
    _drop(s3, "b.jsonl", [record(3), record(4, task="billing"), record(1)])
    (second,) = ingest_landing(s3_lake_cfg)
    assert (second.rows_curated, second.rows_duplicate) == (2, 1)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/").get("Contents", [])}
    assert any(k.startswith("lake/curated/_delta_log/") for k in keys), "the Delta log lives in the bucket"
    assert lake.read_table(s3_lake_cfg, "curated").num_rows == 4
    assert lake.read_table(s3_lake_cfg, "quarantine").num_rows == 1
    assert [h["version"] for h in lake.history(s3_lake_cfg, "curated")][:2] == [after_first + 1, after_first]

    done = restore(s3_lake_cfg, "curated", after_first, actor="test", reason="the second drop was wrong")
    assert done.new_version == after_first + 2
    assert lake.read_table(s3_lake_cfg, "curated").num_rows == 2


def _raw(batch: str, line: int) -> pa.Table:
    row = {"batch_id": batch, "source": f"{batch}.jsonl", "line": line, "prompt": f"p{line}", "response": "r",
           "ingested_at": datetime.now(UTC)}  # fmt: skip
    return pa.Table.from_pylist([row])


def test_writers_racing_on_one_s3_table_lose_no_commit(s3_lake_cfg):
    lake.append(s3_lake_cfg, "raw", _raw("first", 0))  # the table exists before the race, as in production
    errors: list[str] = []

    def writer(n: int) -> None:
        try:
            for i in range(3):
                lake.append(s3_lake_cfg, "raw", _raw(f"writer-{n}", i))
        except Exception as exc:  # the assertion below shows it
            errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert not errors and not any(t.is_alive() for t in threads), errors
    assert lake.table_version(s3_lake_cfg, "raw") == 12
    assert lake.read_table(s3_lake_cfg, "raw").num_rows == 13
