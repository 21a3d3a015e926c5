"""The Arrow evaluation of the suite gives GX's own verdict, row for row, on hostile records."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.validation.native import evaluate
from clm_lib.validation.suite import SuiteSpec, load_suite, validate

ROWS = [
    ("routers", "My router drops the connection every evening", "update the firmware"),
    (None, None, None),
    ("zzz", "   ", ""),
    ("billing", "x", "y" * 500),
    ("routers", "\u2003\u00a0", "\n"),  # Unicode spaces: Python's \s matches them, RE2's would not
    ("thermostats", "line one\n", "ok"),  # Python's $ matches before a final newline
    ("Routers", "é" * 2000, "é" * 400),  # lengths in code points, at the bounds
    ("billing", "é" * 2001, "e" * 401),
    ("", "\x00\x01 weird control characters", "fine"),
    ("payments_api", "short", "ab"),
    ("billing", "\x1c\x1d\x1e\x1f\x0b", "\x85\u200b"),  # whitespace to Python (not U+200B), not to Unicode
]


@pytest.fixture
def cfg(tmp_path):
    return load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path)})


def _table(rows):
    return pa.table({name: pa.array([r[i] for r in rows], pa.string())
                     for i, name in enumerate(("task", "prompt", "response"))})


def _same(native, gx):
    assert native.row_failures == gx.row_failures
    assert (native.success, native.evaluated, native.details) == (gx.success, gx.evaluated, gx.details)
    assert json.loads(json.dumps(native.expectations)) == json.loads(json.dumps(gx.expectations))


def test_the_shipped_suite_gives_gx_verdict_row_for_row(cfg):
    table = _table(ROWS * 3)
    native = evaluate(table, cfg, load_suite(cfg))
    assert native is not None and native.failed > 10
    _same(native, validate(table, cfg))


def test_mostly_strict_bounds_and_match_regex_follow_gx(cfg, tmp_path):
    spec = SuiteSpec("custom", tmp_path / "custom.json", [
        {"type": "expect_column_value_lengths_to_be_between",
         "kwargs": {"column": "prompt", "min_value": 5, "max_value": 2000, "strict_min": True, "mostly": 0.5},
         "meta": {"reason": "short", "detail": "short"}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "task", "regex": "^[a-z_]+$"},
         "meta": {"reason": "task_shape", "detail": "task shape"}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "response", "value_set": ["ok", "fine"], "mostly": 0.1},
         "meta": {"reason": "answer", "detail": "answer"}},
    ])
    table = _table(ROWS)
    native = evaluate(table, cfg, spec)
    assert native is not None
    _same(native, validate(table, cfg, spec))


def test_an_expectation_it_does_not_know_is_left_to_gx(cfg, tmp_path):
    spec = SuiteSpec("other", tmp_path / "other.json", [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "prompt"},
         "meta": {"reason": "dup", "detail": "dup"}},
    ])
    assert evaluate(_table(ROWS), cfg, spec) is None
    conditional = SuiteSpec("cond", tmp_path / "cond.json", [
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "prompt", "row_condition": 'task=="routers"', "condition_parser": "pandas"},
         "meta": {"reason": "p", "detail": "p"}},
    ])
    assert evaluate(_table(ROWS), cfg, conditional) is None


def test_gx_engine_gx_sends_every_batch_through_gx(tmp_path, monkeypatch):
    from clm_lib.data import ingest as ingest_mod
    from clm_lib.data.ingest import ingest_file
    from clm_lib.db import upgrade

    cfg = load_config(REPO_ROOT / "include" / "clm.yaml",
                      environ={"CLM_HOME": str(tmp_path), "CLM__DATA__GX_ENGINE": "gx"})  # fmt: skip
    assert cfg.data.gx_engine == "gx"
    upgrade(cfg.database_url)
    ran = []
    monkeypatch.setattr(ingest_mod.native, "evaluate", lambda *a: pytest.fail("the Arrow engine ran"))
    monkeypatch.setattr(ingest_mod, "validate", lambda *a, **k: ran.append(1) or validate(*a, **k))
    drop = tmp_path / "drop.jsonl"
    drop.write_text("".join(json.dumps({"task": t, "prompt": p or "", "response": r or ""}) + "\n"
                            for t, p, r in ROWS if t))  # fmt: skip
    result = ingest_file(cfg, drop)
    assert ran and result.rows_in == result.rows_curated + result.rows_quarantined + result.rows_duplicate
    assert result.rows_quarantined > 0
