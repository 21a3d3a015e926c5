"""Preparing a batch part by part gives exactly what whole-column normalising, hashing and checking gives."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from clm_lib.data import prepare as prep
from clm_lib.data.ingest import _first_occurrences
from clm_lib.data.records import FIELDS, content_digests, normalise
from clm_lib.validation import native
from clm_lib.validation.suite import load_suite

HOSTILE = [
    ("routers", "My router drops the connection every evening", "update the firmware"),
    (None, None, None),
    ("zzz", "   ", ""),
    (" billing\r\n", "Cafe\u0301 menu\r\nline two ", "e\u0301" * 401),  # NFD, CRLF, spaces: normalised first
    ("routers", "\u2003\u00a0", "\n"),
    ("payments_api", "é" * 2001, "ok"),
    ("thermostats", "\x1c\x1d plain enough text", "fine"),
]


def _rows(n: int) -> pa.Table:
    picked = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    # Several small chunks, as the JSON reader gives them, so parts are merged and split.
    table = pa.table({f: pa.array([r[i] for r in picked], pa.string()) for i, f in enumerate(FIELDS)})
    return pa.Table.from_batches(table.to_batches(max_chunksize=997), table.schema)


def test_parts_give_the_whole_column_results(lake_cfg, monkeypatch):
    monkeypatch.setattr(prep, "STEP_ROWS", 1000)
    rows = _rows(5003)
    plan = native.plan(lake_cfg, load_suite(lake_cfg), ["id", *FIELDS])
    got = prep.prepare(rows, plan)

    normal = {f: normalise(rows[f].combine_chunks()) for f in FIELDS}
    ids, keys = content_digests(normal["task"], normal["prompt"], normal["response"])
    whole = pa.table({"id": ids, **normal})
    assert got.records.equals(whole) and got.keys.equals(keys)
    assert native.verdict(plan, got.records, got.unexpected) == native.evaluate(whole, lake_cfg, load_suite(lake_cfg))
    assert sum(len(c) for c in got.unexpected[0].chunks) == rows.num_rows


def test_without_a_plan_and_without_rows(lake_cfg):
    got = prep.prepare(_rows(10), None)
    assert got.unexpected is None and got.records.num_rows == 10
    plan = native.plan(lake_cfg, load_suite(lake_cfg), ["id", *FIELDS])
    empty = prep.prepare(_rows(0), plan)
    assert empty.records.num_rows == 0 and len(empty.keys) == 0 and len(empty.unexpected) == len(plan.steps)
    assert json.dumps(native.verdict(plan, empty.records, empty.unexpected).expectations) == "[]"


def test_first_occurrences_by_digest_heads_and_by_group_by():
    keys = prep.prepare(_rows(20), None).keys  # HOSTILE repeats every 7 rows
    first = _first_occurrences(keys).to_pylist()
    assert first == [i < len(HOSTILE) for i in range(20)]
    distinct = keys.slice(3, 7)
    assert _first_occurrences(distinct).to_pylist() == [True] * 7
    assert pc.all(_first_occurrences(keys.cast(pa.binary()).slice(0, 7))).as_py()
