"""The landing folder is untrusted: links, FIFOs, hard links and oversized files are never read."""

import os
import threading

import pyarrow as pa
import pytest
from sqlalchemy import select

from clm_lib.data import lake
from clm_lib.data.ingest import ingest_file, ingest_landing
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Base, IngestionBatch
from clm_lib.errors import IngestError

SECRET = "admin-password-Tr0ub4dor-and-3"


def _everything_stored(cfg) -> str:
    """Every value of every lake table and every row of clm's database, as one text."""
    parts = []
    for name in lake.TABLES:
        table = lake.read_table(cfg, name)
        parts += [str(v) for col in table.columns for v in col.to_pylist()]
    with session_scope(cfg.database_url) as s:
        for table in Base.metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in s.execute(select(table)).all()]
    return "\n".join(parts)


@pytest.fixture
def secret_file(lake_cfg):
    """An admin credentials file outside the landing folder, shaped like a CSV so a reader would take it."""
    path = lake_cfg.home / "admin-credentials"
    path.write_text(f"task,prompt,response\nrouters,the admin password is {SECRET},{SECRET}\n")
    return path


def test_a_symlink_to_a_secret_is_quarantined_as_a_whole_and_never_read(lake_cfg, secret_file, record, write_jsonl):
    landing = lake_cfg.landing_dir
    (landing / "leak.csv").symlink_to(secret_file)
    write_jsonl(landing / "good.jsonl", [record(1)])
    results = {os.path.basename(r.source): r for r in ingest_landing(lake_cfg)}

    leak = results["leak.csv"]
    assert leak.status == "committed" and "symbolic link" in leak.refused
    assert (leak.rows_in, leak.rows_curated, leak.rows_quarantined, leak.rows_duplicate) == (1, 0, 1, 0)
    assert results["good.jsonl"].rows_curated == 1
    row = lake.read_table(lake_cfg, "quarantine").to_pylist()
    assert [(r["reason"], r["line"], r["prompt"], r["raw_text"]) for r in row] == [("symlink_refused", 0, None, None)]
    assert SECRET not in _everything_stored(lake_cfg)
    assert lake.read_table(lake_cfg, "raw").num_rows == 1  # the good file's record only

    # The link itself moved to failed/ (its target is untouched), with the reason, and nothing else leaked.
    moved = landing / "failed" / "leak.csv"
    assert moved.is_symlink() and secret_file.read_text().count(SECRET) == 2
    assert "symbolic link" in (landing / "failed" / "leak.csv.error.txt").read_text()
    assert SECRET not in (landing / "failed" / "leak.csv.error.txt").read_text()
    with session_scope(lake_cfg.database_url) as s:
        batch = s.get(IngestionBatch, leak.batch_id)
        assert (batch.status, batch.quarantine_reasons) == ("committed", {"symlink_refused": 1})
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "ingest_refused")).one()


def test_ingest_file_refuses_a_symlink_even_when_called_directly(lake_cfg, secret_file):
    link = lake_cfg.landing_dir / "direct.csv"
    link.symlink_to(secret_file)
    result = ingest_file(lake_cfg, link)
    assert result.quarantine_reasons == {"symlink_refused": 1} and result.file_sha256 == ""
    assert SECRET not in _everything_stored(lake_cfg)


def test_a_fifo_never_blocks_and_is_quarantined(lake_cfg, record, write_jsonl):
    landing = lake_cfg.landing_dir
    os.mkfifo(landing / "stuck.jsonl")  # no writer: a plain open() would wait forever
    write_jsonl(landing / "good.jsonl", [record(1)])
    outcome = {}

    def run():
        outcome["direct"] = ingest_file(lake_cfg, landing / "stuck.jsonl")
        outcome["landing"] = ingest_landing(lake_cfg)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "ingesting a FIFO blocked"
    assert outcome["direct"].quarantine_reasons == {"special_file_refused": 1}
    assert "FIFO" in outcome["direct"].refused
    assert [r.status for r in outcome["landing"]] == ["skipped", "committed"]
    assert (landing / "failed" / "stuck.jsonl").exists() and (landing / "processed" / "good.jsonl").exists()
    # Refused twice (directly, then from the folder): the same entry is the same batch, quarantined once.
    assert lake.read_table(lake_cfg, "quarantine")["reason"].to_pylist() == ["special_file_refused"]


def test_a_directory_with_a_data_name_is_refused_not_walked(lake_cfg, record, write_jsonl):
    landing = lake_cfg.landing_dir
    (landing / "nested.jsonl").mkdir()
    write_jsonl(landing / "nested.jsonl" / "inner.jsonl", [record(1)])
    (landing / "elsewhere").symlink_to(lake_cfg.home, target_is_directory=True)  # no extension: left alone
    results = ingest_landing(lake_cfg)
    assert [r.quarantine_reasons for r in results] == [{"special_file_refused": 1}]
    assert lake.table_version(lake_cfg, "curated") is None
    assert (landing / "failed" / "nested.jsonl" / "inner.jsonl").exists() and (landing / "elsewhere").is_symlink()


def test_a_hard_link_is_refused_unless_allowed(make_cfg, record, write_jsonl):
    cfg = make_cfg()
    outside = write_jsonl(cfg.home / "private.jsonl", [record(1)])
    os.link(outside, cfg.landing_dir / "linked.jsonl")
    result = ingest_file(cfg, cfg.landing_dir / "linked.jsonl")
    assert result.quarantine_reasons == {"hard_link_refused": 1} and "2 hard links" in result.refused
    assert lake.read_table(cfg, "raw").num_rows == 0

    allowed = make_cfg(allow_hard_links=True)
    os.link(outside, allowed.landing_dir / "linked-too.jsonl")
    assert ingest_file(allowed, allowed.landing_dir / "linked-too.jsonl").rows_curated == 1


def test_a_file_over_max_file_bytes_is_quarantined_unread(make_cfg, record, write_jsonl):
    cfg = make_cfg(max_file_bytes=200)
    write_jsonl(cfg.landing_dir / "big.jsonl", [record(i) for i in range(5)])
    write_jsonl(cfg.landing_dir / "small.jsonl", ["{}"])
    results = {os.path.basename(r.source): r for r in ingest_landing(cfg)}
    big = results["big.jsonl"]
    assert big.quarantine_reasons == {"file_too_large": 1}
    assert "over data.max_file_bytes (200)" in big.refused and big.file_sha256 == ""
    assert results["small.jsonl"].quarantine_reasons == {"missing_column": 1}
    assert "data.max_file_bytes (200)" in (cfg.landing_dir / "failed" / "big.jsonl.error.txt").read_text()
    assert lake.read_table(cfg, "raw")["batch_id"].to_pylist() == [results["small.jsonl"].batch_id]


def test_too_many_rows_is_quarantined_as_a_whole(make_cfg, record, write_jsonl):
    cfg = make_cfg(max_rows_per_file=3)
    result = ingest_file(cfg, write_jsonl(cfg.landing_dir / "many.jsonl", [record(i) for i in range(5)]))
    assert result.quarantine_reasons == {"too_many_rows": 1} and "data.max_rows_per_file (3)" in result.refused
    assert lake.read_table(cfg, "raw").num_rows == 0 and lake.table_version(cfg, "curated") is None


def test_processed_folder_planted_as_a_link_is_refused(lake_cfg, tmp_path, record, write_jsonl):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (lake_cfg.landing_dir / "processed").symlink_to(elsewhere, target_is_directory=True)
    write_jsonl(lake_cfg.landing_dir / "a.jsonl", [record(1)])
    with pytest.raises(IngestError, match="processed is a symbolic link, not a folder"):
        ingest_landing(lake_cfg)
    assert list(elsewhere.iterdir()) == [] and (lake_cfg.landing_dir / "a.jsonl").exists()


def test_error_note_is_never_written_through_a_planted_link(lake_cfg, tmp_path):
    landing = lake_cfg.landing_dir
    (landing / "failed").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (landing / "failed" / "broken.parquet.error.txt").symlink_to(victim)
    (landing / "broken.parquet").write_bytes(b"not parquet")
    assert [r.status for r in ingest_landing(lake_cfg)] == ["failed"]
    assert victim.read_text() == "keep me"
    assert "not a readable Parquet file" in (landing / "failed" / "broken.parquet.error.txt").read_text()


def test_quarantine_row_of_a_refused_file_fits_the_lake_schema(lake_cfg, secret_file):
    (lake_cfg.landing_dir / "leak.jsonl").symlink_to(secret_file)
    ingest_landing(lake_cfg)
    table = lake.read_table(lake_cfg, "quarantine")
    assert table.schema.field("ingested_at").type == pa.timestamp("us", tz="UTC")
    assert table["source"].to_pylist() == [str(lake_cfg.landing_dir / "leak.jsonl")]
