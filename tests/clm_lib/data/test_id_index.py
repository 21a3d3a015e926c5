"""The curated id index: dedupe reads it instead of curated, and it is rebuilt whenever it cannot be trusted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from clm_lib.data import id_index, lake
from clm_lib.data.ingest import ingest_file
from clm_lib.data.records import id_keys


def _index_ids(cfg) -> set[bytes]:
    return set(DeltaTable(id_index.uri(cfg)).to_pyarrow_dataset().to_table(columns=["key"])["key"].to_pylist())


def _curated_keys(cfg) -> set[bytes]:
    return set(id_keys(lake.read_table(cfg, "curated", columns=["id"])["id"]).to_pylist())


@pytest.fixture
def drop(lake_cfg, record, write_jsonl):
    def make(name: str, numbers) -> Path:
        return write_jsonl(lake_cfg.landing_dir / name, [record(i, ticket=i) for i in numbers])

    return make


def test_each_batch_adds_its_keys_and_duplicates_are_found_through_the_index(lake_cfg, drop):
    first = ingest_file(lake_cfg, drop("a.jsonl", range(0, 40)))
    second = ingest_file(lake_cfg, drop("b.jsonl", range(30, 60)))
    assert (first.rows_curated, second.rows_curated, second.rows_duplicate) == (40, 20, 10)
    index = DeltaTable(id_index.uri(lake_cfg))
    assert index.transaction_version(id_index.APP_ID) == lake.table_version(lake_cfg, "curated") == 1
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg) and len(_index_ids(lake_cfg)) == 60
    assert index.metadata().partition_columns == ["bucket"]


def test_a_lake_written_before_the_index_gets_it_built_on_the_next_ingest(lake_cfg, drop):
    ingest_file(lake_cfg, drop("a.jsonl", range(0, 40)))
    shutil.rmtree(id_index.uri(lake_cfg))  # what a lake written by the previous clm looks like
    again = ingest_file(lake_cfg, drop("b.jsonl", range(30, 60)))
    assert (again.rows_curated, again.rows_duplicate) == (20, 10)
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg)


def test_a_restore_of_curated_rebuilds_the_index_so_restored_away_records_can_come_back(lake_cfg, drop):
    from clm_lib.data.versions import restore

    ingest_file(lake_cfg, drop("a.jsonl", range(0, 10)))
    ingest_file(lake_cfg, drop("b.jsonl", range(10, 20)))
    restore(lake_cfg, "curated", 0, actor="test", reason="bad drop")  # records 10-19 leave curated
    back = ingest_file(lake_cfg, drop("c.jsonl", range(5, 20)))
    assert (back.rows_curated, back.rows_duplicate) == (10, 5)
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg) and len(_curated_keys(lake_cfg)) == 20


def test_compaction_does_not_make_the_index_stale(lake_cfg, drop):
    ingest_file(lake_cfg, drop("a.jsonl", range(0, 10)))
    ingest_file(lake_cfg, drop("b.jsonl", range(10, 20)))
    before = DeltaTable(id_index.uri(lake_cfg)).version()
    DeltaTable(lake.table_uri(lake_cfg, "curated")).optimize.compact()
    assert id_index.current(lake_cfg).version() == before  # no rebuild
    later = ingest_file(lake_cfg, drop("c.jsonl", range(15, 25)))
    assert (later.rows_curated, later.rows_duplicate) == (5, 5)
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg)


def test_a_crash_between_the_curated_and_the_index_commit_is_repaired_by_the_retry(lake_cfg, drop, monkeypatch):
    ingest_file(lake_cfg, drop("a.jsonl", range(0, 10)))
    path = drop("b.jsonl", range(5, 25))

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed between the curated and the index commit")

    monkeypatch.setattr(id_index, "add", crash)
    with pytest.raises(RuntimeError):
        ingest_file(lake_cfg, path)
    monkeypatch.undo()
    assert lake.read_table(lake_cfg, "curated").num_rows == 25  # the batch reached curated, not the index
    retried = ingest_file(lake_cfg, path)
    # The batch's own curated rows are not duplicates of itself: the same counts as a run without the crash.
    assert (retried.rows_in, retried.rows_curated, retried.rows_duplicate) == (20, 15, 5)
    assert lake.read_table(lake_cfg, "curated").num_rows == 25
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg)
    assert ingest_file(lake_cfg, drop("c.jsonl", range(20, 30))).rows_duplicate == 5


def test_a_small_batch_reads_only_the_buckets_its_keys_fall_in(lake_cfg, drop):
    ingest_file(lake_cfg, drop("a.jsonl", range(0, 200)))
    keys = id_keys(lake.read_table(lake_cfg, "curated", columns=["id"])["id"])
    probe = keys.slice(0, 1)
    mine = id_index.buckets(probe)[0].as_py()
    # Break every other bucket's files: a read of them would fail.
    for folder in Path(id_index.uri(lake_cfg)).glob("bucket=*"):
        if folder.name != f"bucket={mine}":
            for f in folder.glob("*.parquet"):
                f.write_bytes(b"not parquet")
    assert id_index.seen(lake_cfg, probe).to_pylist() == [True]
    other = keys.filter(pc.not_equal(id_index.buckets(keys), mine)).slice(0, 1)
    with pytest.raises(Exception):  # noqa: B017 - any read error proves the bucket is read
        id_index.seen(lake_cfg, other)


def test_lake_maintenance_compacts_the_index_with_curated(lake_cfg, drop):
    from clm_lib.data.maintenance import optimize

    for i in range(3):
        ingest_file(lake_cfg, drop(f"{i}.jsonl", range(100 * i, 100 * i + 100)))
    files = len(DeltaTable(id_index.uri(lake_cfg)).file_uris())
    optimize(lake_cfg, "curated")
    index = DeltaTable(id_index.uri(lake_cfg))
    assert len(index.file_uris()) < files and index.transaction_version(id_index.APP_ID) == 2
    assert _index_ids(lake_cfg) == _curated_keys(lake_cfg)
    later = ingest_file(lake_cfg, drop("later.jsonl", range(250, 350)))
    assert (later.rows_curated, later.rows_duplicate) == (50, 50)


def test_reading_the_whole_index_ahead_finds_what_the_bucket_scan_finds(lake_cfg, drop):
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from clm_lib.data.records import content_digests

    first = ingest_file(lake_cfg, drop("a.jsonl", range(0, id_index.AHEAD_ROWS + 44)))
    ingest_file(lake_cfg, drop("b.jsonl", range(1000, 1010)))
    rows = lake.read_table(lake_cfg, "curated", columns=["id", "batch_id"])
    mine = rows.filter(pc.equal(rows["batch_id"], first.batch_id))["id"]
    others = rows.filter(pc.not_equal(rows["batch_id"], first.batch_id))["id"]
    fresh = content_digests(*(pa.array([f"{f} {i}" for i in range(200)]) for f in ("t", "p", "r")))[1]
    probe = pa.concat_arrays([id_keys(mine).slice(0, 150), fresh, id_keys(others)])
    for exclude in (None, first.batch_id):
        with ThreadPoolExecutor(1) as pool:
            ahead = id_index.read_ahead(lake_cfg, pool)
            got = id_index.seen(lake_cfg, probe, exclude_batch=exclude, ahead=ahead)
        assert got.equals(id_index.seen(lake_cfg, probe, exclude_batch=exclude))
        # Batch a's rows do not count against batch a (a retry of it); b's still do.
        assert pc.sum(got).as_py() == (150 + 10 if exclude is None else 10)
