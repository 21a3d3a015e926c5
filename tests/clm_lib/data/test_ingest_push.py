"""Pushed ingestion (clm_lib/data/push.py): the same path as a landing file, per-record outcomes, counts that
reconcile, idempotency keys, size limits, and concurrent pushes that never curate a record twice."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_file
from clm_lib.data.push import Failed, KeyConflict, NotReadable, TooLarge, push
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import AuditEntry, IngestionBatch


def _reconciles(answer) -> None:
    assert answer.rows_in == answer.rows_curated + answer.rows_duplicate + answer.rows_quarantined
    counts = {"curated": answer.rows_curated, "duplicate": answer.rows_duplicate,
              "quarantined": answer.rows_quarantined}  # fmt: skip
    assert Counter(o.outcome for o in answer.outcomes) == {k: v for k, v in counts.items() if v}


def test_a_json_array_gets_the_ids_a_landing_file_of_the_same_records_gets(lake_cfg, record, write_jsonl,
                                                                          tmp_path):  # fmt: skip
    records = [record(1), record(2, task="billing"), record(3, task="thermostats")]
    answer, replayed = push(lake_cfg, json.dumps(records).encode(), "json", actor="key:ops")

    assert not replayed and answer.status == "committed" and answer.source == "webhook:key:ops"
    assert [o.outcome for o in answer.outcomes] == ["curated"] * 3
    pushed = lake.read_table(lake_cfg, "curated")
    assert pushed["id"].to_pylist() == [o.id for o in answer.outcomes]

    other = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path / "other")})
    other.landing_dir.mkdir(parents=True, exist_ok=True)
    upgrade(other.database_url)
    ingest_file(other, write_jsonl(other.landing_dir / "same.jsonl", records))
    from_file = lake.read_table(other, "curated")
    assert from_file["id"].to_pylist() == pushed["id"].to_pylist()
    assert from_file["split"].to_pylist() == pushed["split"].to_pylist()
    assert from_file["prompt"].to_pylist() == pushed["prompt"].to_pylist()


def test_bad_records_are_quarantined_with_a_reason_and_nothing_is_lost(lake_cfg, record):
    body = json.dumps([record(1), record(1), "just a string", None, {"task": "routers"},
                       record(2, task="spaceships"), record(3)]).encode()  # fmt: skip

    answer, _ = push(lake_cfg, body, "json", actor="airflow:otto")

    assert (answer.rows_in, answer.rows_curated, answer.rows_duplicate, answer.rows_quarantined) == (7, 2, 1, 4)
    _reconciles(answer)
    by_line = {o.line: o for o in answer.outcomes}
    assert [by_line[i].outcome for i in range(1, 8)] == ["curated", "duplicate", "quarantined", "quarantined",
                                                         "quarantined", "quarantined", "curated"]  # fmt: skip
    assert by_line[2].id == by_line[1].id
    assert (by_line[3].reason, by_line[4].reason, by_line[5].reason, by_line[6].reason) == (
        "not_an_object",
        "not_an_object",
        "missing_column",
        "unknown_task",
    )
    assert by_line[6].id is not None and by_line[3].id is None
    assert "not an object" in by_line[3].detail
    with session_scope(lake_cfg.database_url) as s:
        row = s.get(IngestionBatch, answer.batch_id)
        assert (row.source, row.source_format, row.status, row.rows_in) == ("webhook:airflow:otto", "json",
                                                                           "committed", 7)  # fmt: skip
        pushed = s.scalars(select(AuditEntry).where(AuditEntry.action == "ingest.pushed")).all()
        assert [(a.actor, a.target, a.details["rows_curated"]) for a in pushed] == [
            ("airflow:otto", f"ingestion_batch:{answer.batch_id}", 2)
        ]


def test_a_malformed_ndjson_line_costs_only_itself_and_a_second_push_is_all_duplicates(lake_cfg, record):
    body = (json.dumps(record(1)) + "\n{not json\n\n" + json.dumps(record(2)) + "\n").encode()

    first, _ = push(lake_cfg, body, "jsonl", actor="key:a")
    again, replayed = push(lake_cfg, body, "jsonl", actor="key:a")  # no key: a new batch, nothing new in it

    assert [(o.line, o.outcome, o.reason) for o in first.outcomes] == [
        (1, "curated", None),
        (2, "quarantined", "malformed_json"),
        (4, "curated", None),
    ]
    assert not replayed and again.batch_id != first.batch_id
    assert (again.rows_in, again.rows_curated, again.rows_duplicate, again.rows_quarantined) == (3, 0, 2, 1)
    _reconciles(again)
    assert lake.read_table(lake_cfg, "curated").num_rows == 2


def test_csv_is_read_as_a_csv_file_is(lake_cfg, record):
    r = record(5)
    body = f'task,prompt,response\n{r["task"]},"{r["prompt"]}","{r["response"]}"\nrouters,short\n'.encode()

    answer, _ = push(lake_cfg, body, "csv", actor="key:a")

    assert [(o.line, o.outcome, o.reason) for o in answer.outcomes] == [
        (2, "curated", None),
        (3, "quarantined", "wrong_field_count"),
    ]


def test_the_same_key_and_body_replays_the_answer_and_ingests_nothing(lake_cfg, record):
    body = json.dumps([record(1), record(2)]).encode()

    first, replayed_first = push(lake_cfg, body, "json", actor="key:a", key="order-17")
    version = lake.table_version(lake_cfg, "raw")
    again, replayed = push(lake_cfg, body, "json", actor="key:a", key="order-17")

    assert (replayed_first, replayed) == (False, True)
    assert again == first and again.idempotency_key == "order-17"
    assert lake.table_version(lake_cfg, "raw") == version
    with session_scope(lake_cfg.database_url) as s:
        assert len(s.scalars(select(IngestionBatch)).all()) == 1
        assert len(s.scalars(select(AuditEntry).where(AuditEntry.action == "ingest.pushed")).all()) == 1


def test_a_key_reused_with_another_body_or_caller_is_refused(lake_cfg, record):
    push(lake_cfg, json.dumps([record(1)]).encode(), "json", actor="key:a", key="k1")

    with pytest.raises(KeyConflict, match="'k1'"):
        push(lake_cfg, json.dumps([record(2)]).encode(), "json", actor="key:a", key="k1")
    with pytest.raises(KeyConflict):
        push(lake_cfg, json.dumps([record(1)]).encode(), "json", actor="key:b", key="k1")
    assert lake.read_table(lake_cfg, "curated").num_rows == 1


def test_limits_refuse_the_whole_body(make_cfg, record):
    cfg = make_cfg(webhook={"max_body_bytes": 2000, "max_records": 2})

    with pytest.raises(TooLarge, match=r"max_body_bytes \(2000 bytes\)"):
        push(cfg, b"[" + b" " * 2000 + b"]", "json", actor="key:a")
    with pytest.raises(TooLarge, match=r"3 records, more than data.webhook.max_records \(2\)"):
        push(cfg, json.dumps([record(1), record(2), record(3)]).encode(), "json", actor="key:a")
    with pytest.raises(NotReadable, match="not JSON"):
        push(cfg, b"[{", "json", actor="key:a")
    with pytest.raises(NotReadable, match="Idempotency-Key"):
        push(cfg, b"[]", "json", actor="key:a", key="has space")
    assert lake.table_version(cfg, "raw") is None


def test_a_long_answer_lists_the_first_outcomes_and_counts_every_record(make_cfg, record):
    cfg = make_cfg(webhook={"max_outcomes": 2})

    answer, _ = push(cfg, json.dumps([record(i) for i in range(5)]).encode(), "json", actor="key:a")

    assert [o.line for o in answer.outcomes] == [1, 2] and answer.outcomes_left_off == 3
    assert (answer.rows_in, answer.rows_curated) == (5, 5)


def test_a_batch_that_cannot_be_ingested_is_refused_and_its_row_says_why(make_cfg, record):
    cfg = make_cfg(gx_suite="no_such_suite")

    with pytest.raises(Failed, match="no_such_suite"):
        push(cfg, json.dumps([record(1)]).encode(), "json", actor="key:a", key="k")

    assert lake.table_version(cfg, "curated") is None
    with session_scope(cfg.database_url) as s:
        assert [(b.status, "no_such_suite" in b.error) for b in s.scalars(select(IngestionBatch))] == [("failed", True)]


def test_concurrent_pushes_of_the_same_records_curate_each_once(lake_cfg, record):
    body = json.dumps([record(i) for i in range(6)]).encode()
    answers, errors = [], []

    def send(i: int) -> None:
        try:
            answers.append(push(lake_cfg, body, "json", actor=f"key:{i}")[0])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    curated = lake.read_table(lake_cfg, "curated")
    assert curated.num_rows == 6 and len(set(curated["id"].to_pylist())) == 6
    assert sorted(a.rows_curated for a in answers) == [0, 0, 0, 6]
    assert sum(a.rows_duplicate for a in answers) == 18


def test_concurrent_pushes_with_one_key_ingest_once(lake_cfg, record):
    body = json.dumps([record(i) for i in range(3)]).encode()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(push(lake_cfg, body, "json", actor="key:a", key="same")))
               for _ in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(replayed for _, replayed in answers) == [False, True, True]
    assert len({a.batch_id for a, _ in answers}) == 1
    with session_scope(lake_cfg.database_url) as s:
        assert len(s.scalars(select(IngestionBatch)).all()) == 1
    assert lake.read_table(lake_cfg, "curated").num_rows == 3
