import json
import os
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from clm_lib.data import ingest, lake
from clm_lib.data.ingest import curated_rows_since, held_out, ingest_file, ingest_landing
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, IngestionBatch, ValidationResult
from clm_lib.errors import IngestError


@pytest.fixture
def mixed_file(lake_cfg, record, write_jsonl):
    """12 lines: 4 good, 1 repeat of a good one, 7 bad in as many ways."""
    lines = [
        record(1, ticket=101),
        record(2, task="billing"),
        record(1, ticket=101),  # repeat of line 1
        "{not json",
        '"just a string"',
        b'{"task": "routers", "prompt": "caf\xe9 reboots again", "response": "Reset it."}',
        {"task": "routers", "prompt": "where is my response?"},
        {"task": "routers", "prompt": 404, "response": "Not found."},
        record(3, task="spaceships"),
        {**record(4), "response": "   "},
        {**record(5), "prompt": "x" * 2001},
        record(6, task="thermostats"),
        record(7, task="ev_chargers"),
    ]
    return write_jsonl(lake_cfg.landing_dir / "mixed.jsonl", lines)


EXPECTED_REASONS = {
    4: "malformed_json",
    5: "not_an_object",
    6: "bad_encoding",
    7: "missing_column",
    8: "not_a_string",
    9: "unknown_task",
    10: "empty_response",
    11: "prompt_too_long",
}


def test_mixed_file_reconciles_and_every_bad_line_has_its_reason(lake_cfg, mixed_file):
    result = ingest_file(lake_cfg, mixed_file)
    assert result.status == "committed"
    assert (result.rows_in, result.rows_curated, result.rows_quarantined, result.rows_duplicate) == (13, 4, 8, 1)
    assert result.rows_in == result.rows_curated + result.rows_quarantined + result.rows_duplicate
    assert result.task_counts == {"billing": 1, "ev_chargers": 1, "routers": 1, "thermostats": 1}
    assert result.quarantine_reasons == dict(Counter(EXPECTED_REASONS.values()))

    quarantine = lake.read_table(lake_cfg, "quarantine")
    assert dict(zip(quarantine["line"].to_pylist(), quarantine["reason"].to_pylist(), strict=True)) == EXPECTED_REASONS
    by_line = {r["line"]: r for r in quarantine.to_pylist()}
    assert by_line[4]["raw_text"] == "{not json" and by_line[4]["id"] is None
    assert by_line[6]["prompt"] == "caf\ufffd reboots again" and "0xe9" in by_line[6]["detail"]
    assert by_line[8]["prompt"] == "404"
    assert by_line[10]["response"] == "   "  # quarantine keeps the value as sent, not trimmed
    assert by_line[11]["detail"] == "prompt has more than 2000 characters"
    assert {r["batch_id"] for r in quarantine.to_pylist()} == {result.batch_id}

    curated = lake.read_table(lake_cfg, "curated")
    assert sorted(curated["line"].to_pylist()) == [1, 2, 12, 13]
    first = next(r for r in curated.to_pylist() if r["line"] == 1)
    assert json.loads(first["metadata"]) == {"ticket": 101}
    assert first["source"] == str(mixed_file) and first["split"] in {"train", "eval"}
    assert lake.read_table(lake_cfg, "raw").num_rows == 13  # every line, as it arrived

    with session_scope(lake_cfg.database_url) as s:
        batch = s.get(IngestionBatch, result.batch_id)
        assert (batch.status, batch.rows_in, batch.rows_curated, batch.rows_duplicate) == ("committed", 13, 4, 1)
        assert (batch.raw_version, batch.curated_version, batch.quarantine_version) == (0, 0, 0)
        assert batch.quarantine_reasons == result.quarantine_reasons
        verdict = s.scalars(select(ValidationResult).where(ValidationResult.batch_id == result.batch_id)).one()
        # Lines with read problems never reach GX: 13 - 5 of them - 1 repeat = 7 validated, 3 rejected.
        assert (verdict.success, verdict.evaluated, verdict.failed) == (False, 7, 3)
        # The blank response also breaks the minimum length; the first reason in suite order names the row.
        assert {e["reason"] for e in verdict.expectations if not e["success"]} == {
            "unknown_task", "empty_response", "response_too_short", "prompt_too_long",
        }
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "ingest_batch")).one().target.endswith(
            result.batch_id
        )
    assert json.loads(json.dumps(result.as_dict()))["rows_curated"] == 4


def test_reingesting_the_same_file_adds_nothing(lake_cfg, mixed_file):
    first = ingest_file(lake_cfg, mixed_file)
    versions = {t: lake.table_version(lake_cfg, t) for t in ("raw", "curated", "quarantine")}
    again = ingest_file(lake_cfg, mixed_file)
    assert again.status == "skipped" and again.batch_id == first.batch_id
    assert (again.rows_in, again.rows_curated, again.rows_quarantined) == (0, 0, 0)
    assert "already ingested" in again.notes[0]
    assert {t: lake.table_version(lake_cfg, t) for t in versions} == versions


def test_same_record_in_jsonl_csv_and_parquet_gets_one_id(lake_cfg, record, write_jsonl):
    rec = record(9, task="billing")
    jsonl = write_jsonl(lake_cfg.landing_dir / "a.jsonl", [rec])
    csv = lake_cfg.landing_dir / "b.csv"
    # Same record with CRLF line ends and stray spaces around the response.
    csv.write_bytes(f'task,prompt,response\r\nbilling,"{rec["prompt"]}", {rec["response"]} \r\n'.encode())
    parquet = lake_cfg.landing_dir / "c.parquet"
    pq.write_table(pa.Table.from_pylist([rec]), parquet)
    first, second, third = (ingest_file(lake_cfg, p) for p in (jsonl, csv, parquet))
    assert (first.rows_curated, second.rows_curated, second.rows_duplicate) == (1, 0, 1)
    assert (third.rows_curated, third.rows_duplicate) == (0, 1)
    assert lake.read_table(lake_cfg, "raw").num_rows == 3


def test_parquet_and_csv_problems_end_in_quarantine(lake_cfg, record):
    pq.write_table(
        pa.table({"task": ["routers", "billing"], "prompt": [1, 2], "response": ["Reboot it.", "Refunded."]}),
        lake_cfg.landing_dir / "typed.parquet",
    )
    (lake_cfg.landing_dir / "short.csv").write_text(
        f'task,prompt,response\nrouters,"{record(1)["prompt"]}\nsecond line",Reboot.\nrouters,only two\n'
    )
    parquet = ingest_file(lake_cfg, lake_cfg.landing_dir / "typed.parquet")
    assert parquet.quarantine_reasons == {"not_a_string": 2}
    csv = ingest_file(lake_cfg, lake_cfg.landing_dir / "short.csv")
    assert (csv.rows_curated, csv.quarantine_reasons) == (1, {"wrong_field_count": 1})
    assert lake.read_table(lake_cfg, "curated")["prompt"].to_pylist() == [record(1)["prompt"] + "\nsecond line"]


def test_empty_file_is_a_batch_with_a_note(lake_cfg):
    path = lake_cfg.landing_dir / "empty.jsonl"
    path.write_bytes(b"")
    result = ingest_file(lake_cfg, path)
    assert (result.status, result.rows_in, result.notes) == ("committed", 0, ["empty file: no records"])
    assert lake.table_version(lake_cfg, "curated") is None


def test_a_batch_retried_after_a_crash_writes_each_table_once(lake_cfg, mixed_file, monkeypatch):
    real_append = lake.append

    def crash_on_quarantine(cfg, name, table, **kw):
        if name == "quarantine":
            raise OSError("disk full")
        return real_append(cfg, name, table, **kw)

    monkeypatch.setattr(lake, "append", crash_on_quarantine)
    with pytest.raises(OSError, match="disk full"):
        ingest_file(lake_cfg, mixed_file)
    monkeypatch.setattr(lake, "append", real_append)
    with session_scope(lake_cfg.database_url) as s:
        assert s.scalars(select(IngestionBatch)).one().status == "failed"

    result = ingest_file(lake_cfg, mixed_file)
    assert (result.status, result.rows_curated, result.rows_duplicate) == ("committed", 4, 1)
    assert lake.read_table(lake_cfg, "raw").num_rows == 13
    assert lake.read_table(lake_cfg, "curated").num_rows == 4
    assert lake.read_table(lake_cfg, "quarantine").num_rows == 8


def test_curated_rows_since_uses_time_travel(lake_cfg, record, write_jsonl):
    a = ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "a.jsonl", [record(i) for i in range(30)]))
    b = ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "b.jsonl", [record(i) for i in range(20, 50)]))
    assert (a.curated_version, b.curated_version, b.rows_curated, b.rows_duplicate) == (0, 1, 20, 10)
    new = curated_rows_since(lake_cfg, a.curated_version)
    assert new.num_rows == 20 and set(new["batch_id"].to_pylist()) == {b.batch_id}
    assert curated_rows_since(lake_cfg, None).num_rows == 50
    assert curated_rows_since(lake_cfg, None, until=a.curated_version).num_rows == 30
    train = curated_rows_since(lake_cfg, a.curated_version, split="train")
    assert set(train["split"].to_pylist()) == {"train"} and train.num_rows < 20


def test_held_out_is_the_stable_eval_split(lake_cfg, record, write_jsonl):
    lines = [record(i, task=("routers", "billing")[i % 2]) for i in range(200)]
    ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "a.jsonl", lines))
    held = held_out(lake_cfg)
    assert 10 < held.num_rows < 50 and set(held["split"].to_pylist()) == {"eval"}
    assert set(held_out(lake_cfg, ["billing"])["task"].to_pylist()) == {"billing"}
    rows = held.to_pylist()
    assert rows == sorted(rows, key=lambda r: (r["task"], r["id"]))  # stable order for stable subsets


def test_landing_moves_files_and_isolates_a_broken_one(lake_cfg, record, write_jsonl):
    landing = lake_cfg.landing_dir
    write_jsonl(landing / "1-first.jsonl", [record(1)])
    (landing / "2-broken.parquet").write_bytes(b"not parquet at all")
    write_jsonl(landing / "3-third.jsonl", [record(3)])
    (landing / "notes.txt").write_text("not data")
    results = ingest_landing(lake_cfg)
    assert [r.status for r in results] == ["committed", "failed", "committed"]
    assert sorted(p.name for p in (landing / "processed").iterdir()) == ["1-first.jsonl", "3-third.jsonl"]
    assert sorted(p.name for p in (landing / "failed").iterdir()) == [
        "2-broken.parquet", "2-broken.parquet.error.txt",
    ]
    assert "not a readable Parquet file" in (landing / "failed" / "2-broken.parquet.error.txt").read_text()
    assert (landing / "notes.txt").exists()
    assert ingest_landing(lake_cfg) == []


def test_landing_folder_missing_or_not_a_folder(make_cfg):
    cfg = make_cfg()
    cfg.landing_dir.rmdir()
    with pytest.raises(IngestError, match=f"landing folder {cfg.landing_dir} does not exist"):
        ingest_landing(cfg)
    cfg.landing_dir.write_text("a file where a folder should be")
    with pytest.raises(IngestError, match=f"landing folder {cfg.landing_dir} is not a folder"):
        ingest_landing(cfg)


def test_landing_folder_without_permission(lake_cfg, monkeypatch):
    # Tests run as root here, where chmod 000 does not stop reading; the OS error is raised directly.
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ingest.os, "scandir", denied)
    with pytest.raises(IngestError, match=f"landing folder {lake_cfg.landing_dir} cannot be read: Permission denied"):
        ingest_landing(lake_cfg)


def test_100k_lines_ingest_in_seconds(lake_cfg, record, write_jsonl, capsys):
    """Measures (does not assert) the time of a 100k-line JSONL ingest; the figure is printed."""
    path = lake_cfg.landing_dir / "big.jsonl"
    with path.open("w") as fh:
        for i in range(100_000):
            fh.write(json.dumps(record(i, task=("routers", "billing", "thermostats")[i % 3], ticket=i)) + "\n")
    # A warm process (GX imported, lake created), as in a scheduler-run task after its first batch.
    ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "warm.jsonl", [record(-1)]))
    started = time.perf_counter()
    result = ingest_file(lake_cfg, path)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n100k-line JSONL ingest: {elapsed:.2f} s ({result.rows_curated} curated)")
    assert result.rows_curated == 100_000 and result.rows_duplicate == 0


def test_a_file_that_crashes_twice_is_set_aside_and_later_files_go_on(lake_cfg, record, write_jsonl, monkeypatch):
    landing = lake_cfg.landing_dir
    write_jsonl(landing / "1-poison.jsonl", [record(1)])
    write_jsonl(landing / "2-next.jsonl", [record(2)])
    os.utime(landing / "1-poison.jsonl", (1, 1))  # oldest: ingested first
    real_read_text = ingest.read_text

    def out_of_memory(data, fmt, **kw):
        if kw.get("name") == "1-poison.jsonl":
            raise MemoryError()
        return real_read_text(data, fmt, **kw)

    monkeypatch.setattr(ingest, "read_text", out_of_memory)
    with pytest.raises(MemoryError):  # the first crash may be the lake or the database: the run stops
        ingest_landing(lake_cfg)
    assert (landing / "1-poison.jsonl").exists() and (landing / "2-next.jsonl").exists()

    results = ingest_landing(lake_cfg)  # the second crash on the same file sets it aside
    assert [(os.path.basename(r.source), r.status) for r in results] == [
        ("1-poison.jsonl", "failed"), ("2-next.jsonl", "committed"),
    ]
    assert "ingestion failed 2 times" in results[0].error and "MemoryError" in results[0].error
    assert "MemoryError" in (landing / "failed" / "1-poison.jsonl.error.txt").read_text()
    assert (landing / "processed" / "2-next.jsonl").exists()
    with session_scope(lake_cfg.database_url) as s:
        poison = s.scalars(select(IngestionBatch).where(IngestionBatch.source.endswith("1-poison.jsonl"))).one()
        assert poison.status == "gave_up"
        assert [n.split(" at ")[0].split(":")[0] for n in poison.notes] == [
            "attempt 1 started", "attempt 1 failed", "attempt 2 started", "attempt 2 failed",
        ]
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "ingest_gave_up")).one()

    # Fixed and dropped again on purpose: attempts start afresh and the file is ingested.
    monkeypatch.setattr(ingest, "read_text", real_read_text)
    (landing / "failed" / "1-poison.jsonl").rename(landing / "1-poison.jsonl")
    again = ingest_landing(lake_cfg)
    assert [(r.status, r.rows_curated) for r in again] == [("committed", 1)]


def test_a_batch_left_running_by_a_killed_process_is_retried_and_says_so(lake_cfg, mixed_file):
    first = ingest_file(lake_cfg, mixed_file)
    with session_scope(lake_cfg.database_url) as s:  # as a SIGKILL after the Delta writes would leave it
        s.get(IngestionBatch, first.batch_id).status = "running"
    retried = ingest_file(lake_cfg, mixed_file)
    assert (retried.status, retried.rows_curated, retried.rows_duplicate) == ("committed", 4, 1)
    assert retried.notes[0].startswith("attempt 1 interrupted: the process ended before finishing it")
    assert lake.read_table(lake_cfg, "curated").num_rows == 4


def test_a_latin1_csv_is_quarantined_with_its_encoding_named_or_read_with_auto(make_cfg):
    text = ("task,prompt,response\nrouters,My router drops every evening,Update the firmware\n"
            "billing,La facture est erronée à nouveau,Nous avons remboursé le trop-perçu\n")
    strict = make_cfg()
    (strict.landing_dir / "latin.csv").write_bytes(text.encode("cp1252"))
    result = ingest_file(strict, strict.landing_dir / "latin.csv")
    assert (result.rows_curated, result.quarantine_reasons) == (1, {"bad_encoding": 1})
    assert "it looks like cp1252" in result.notes[0]
    detail = lake.read_table(strict, "quarantine")["detail"][0].as_py()
    assert "re-save it as UTF-8 or set data.encoding: cp1252" in detail

    auto = make_cfg(encoding="auto")
    (auto.landing_dir / "latin-2.csv").write_bytes(text.encode("cp1252"))
    result = ingest_file(auto, auto.landing_dir / "latin-2.csv")
    assert (result.rows_curated, result.rows_quarantined) == (1, 0)  # the other is a duplicate of the first run
    assert "read as cp1252" in result.notes[0]
    with session_scope(auto.database_url) as s:
        assert "read as cp1252" in s.get(IngestionBatch, result.batch_id).notes[0]
    assert "La facture est erronée à nouveau" in lake.read_table(auto, "curated")["prompt"].to_pylist()


def test_a_landed_file_waits_for_the_ingest_lock_and_stays_when_it_stays_busy(lake_cfg, record, write_jsonl,
                                                                               monkeypatch):  # fmt: skip
    import threading

    from clm_lib.data.ingest_lock import ingest_lock
    from clm_lib.errors import ClmError

    landing = lake_cfg.landing_dir
    write_jsonl(landing / "1-first.jsonl", [record(1)])
    monkeypatch.setattr(ingest, "LANDING_LOCK_WAIT_S", 0.3)
    with ingest_lock(lake_cfg, "a push", wait_seconds=1), pytest.raises(ClmError, match="held the ingest lock") as busy:
        ingest_landing(lake_cfg)
    assert not isinstance(busy.value, IngestError)  # not the file's fault: it is not set aside
    assert (landing / "1-first.jsonl").exists() and not (landing / "failed").exists()

    monkeypatch.setattr(ingest, "LANDING_LOCK_WAIT_S", 30.0)
    taken = threading.Event()

    def push() -> None:
        with ingest_lock(lake_cfg, "a push", wait_seconds=5):
            taken.set()
            time.sleep(0.5)

    holder = threading.Thread(target=push)
    holder.start()
    assert taken.wait(10)
    t0 = time.monotonic()
    results = ingest_landing(lake_cfg)
    holder.join()
    assert [r.status for r in results] == ["committed"] and time.monotonic() - t0 >= 0.3  # it waited its turn
