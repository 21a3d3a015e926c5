"""The GX suite's row-level expectations evaluated on Arrow columns, with Great Expectations' semantics.

Running GX itself costs ~0.25 s per batch before it looks at a row (an ephemeral context, the metric graph) and
~0.3 s per 100k rows in pandas (measured on 2 cores: docs/benchmarks.md, "Ingestion"): more than reading and
writing the whole batch. So the expectation types the shipped suite uses are evaluated here, the way GX 1.24's
pandas engine evaluates them, and the verdict has the shape :func:`clm_lib.validation.suite.validate` gives:

- ``expect_column_values_to_not_be_null``: a null is unexpected; percent over all rows;
- ``expect_column_values_to_be_in_set``: a non-null value outside ``value_set``; percent over non-null rows;
- ``expect_column_value_lengths_to_be_between``: length in code points outside ``min_value``/``max_value``
  (``strict_min``/``strict_max`` make the bound exclusive); nulls are not counted;
- ``expect_column_values_to_match_regex`` / ``..._not_match_regex``: Python's ``re.search``, as pandas'
  ``str.contains`` does (not Arrow's RE2, whose ``\\s`` and ``$`` differ), once per distinct value;
- ``mostly``: the share of expected values (over the same denominator) must reach it.

The suite file stays the authority: its order, reasons, details and ``$PARAMETER`` bounds are used as they are.
A suite with any other expectation type or keyword (``row_condition``...) is run by GX itself
(:func:`evaluate` answers None). ``tests/clm_lib/validation/test_native.py`` runs both on the same hostile rows
and requires the same verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clm_lib.validation.suite import SuiteResult, SuiteSpec, _detail, _json_safe, failing_values, suite_parameters

_KWARGS = {
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_value_lengths_to_be_between": {"column", "mostly", "min_value", "max_value", "strict_min",
                                                  "strict_max"},
    "expect_column_values_to_match_regex": {"column", "mostly", "regex"},
    "expect_column_values_to_not_match_regex": {"column", "mostly", "regex"},
}
SUPPORTED = frozenset(_KWARGS)

_MISSING = object()


def _resolve(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
        return params.get(value["$PARAMETER"], _MISSING)
    return value


def _plan(suite: SuiteSpec, params: dict[str, Any], columns: list[str]) -> list[tuple[dict, dict]] | None:
    """(expectation, resolved kwargs) per expectation, or None when one is not evaluated here."""
    plan = []
    for exp in suite.expectations:
        allowed = _KWARGS.get(exp["type"])
        if allowed is None or not set(exp["kwargs"]) <= allowed:
            return None
        kwargs = {k: _resolve(v, params) for k, v in exp["kwargs"].items()}
        if any(v is _MISSING for v in kwargs.values()) or kwargs.get("column") not in columns:
            return None
        mostly = kwargs.get("mostly", 1.0)
        if isinstance(mostly, bool) or not isinstance(mostly, int | float) or not 0 <= mostly <= 1:
            return None
        if "value_set" in exp["kwargs"]:
            values = kwargs["value_set"]
            if not isinstance(values, list | tuple | set) or not all(isinstance(v, str) for v in values):
                return None
        if exp["type"] == "expect_column_value_lengths_to_be_between":
            bounds = [kwargs.get("min_value"), kwargs.get("max_value")]
            if all(b is None for b in bounds) or any(b is not None and (isinstance(b, bool) or not isinstance(
                    b, int | float)) for b in bounds):
                return None
        if "regex" in kwargs:
            if not isinstance(kwargs["regex"], str):
                return None
            try:
                re.compile(kwargs["regex"])
            except re.error:
                return None
        plan.append((exp, kwargs))
    return plan


_PY_SPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
"""Every character Python's ``\\s`` matches in a str pattern (``str.isspace``), for the blank-value patterns."""
_BLANK_PATTERNS = {r"^\s*$": False, r"^\s+$": True}
"""Patterns meaning "only whitespace" -> whether they need one character. They need no regex: a value matches when
stripping Python's whitespace leaves nothing (``$`` also matches before a final ``\\n``, itself whitespace)."""


def _regex_hits(column: pa.Array, pattern: str) -> pa.Array:
    """Per row: ``re.search(pattern, value)`` found something (null for a null value)."""
    if pattern in _BLANK_PATTERNS:
        hits = pc.equal(pc.utf8_trim(column, characters=_PY_SPACE), "")
        return pc.and_(hits, pc.greater(pc.utf8_length(column), 0)) if _BLANK_PATTERNS[pattern] else hits
    search = re.compile(pattern).search
    distinct = pc.unique(column).drop_null()
    hits = pa.array([search(v) is not None for v in distinct.to_pylist()], pa.bool_())
    return pc.take(hits, pc.index_in(column, value_set=distinct))


@dataclass(frozen=True)
class Plan:
    """A suite compiled for Arrow: its expectations with their bounds resolved, and the words of each reason."""

    suite: SuiteSpec
    steps: list[tuple[dict[str, Any], dict[str, Any]]]
    details: dict[str, str]


def plan(cfg: Any, suite: SuiteSpec, columns: list[str]) -> Plan | None:
    """``suite`` ready to evaluate on records with ``columns``, or None when it uses an expectation this module does
    not evaluate: then run GX (:func:`clm_lib.validation.suite.validate`)."""
    params = suite_parameters(cfg)
    steps = _plan(suite, params, columns)
    if steps is None:
        return None
    return Plan(suite, steps, {s["meta"]["reason"]: _detail(s, params) for s in suite.expectations})


def _text(records: pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    column = records[name]
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _unexpected(kind: str, column: pa.Array, kwargs: dict[str, Any], lengths: Any) -> pa.Array:
    """Per row: the value is unexpected (never null). ``lengths()`` gives the column's lengths in code points."""
    if kind == "expect_column_values_to_not_be_null":
        return pc.is_null(column)
    if kind == "expect_column_values_to_be_in_set":
        bad = pc.invert(pc.is_in(column, value_set=pa.array(list(kwargs["value_set"]), pa.string())))
    elif kind == "expect_column_value_lengths_to_be_between":
        ok = None
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None:
            ok = (pc.greater if kwargs.get("strict_min") else pc.greater_equal)(lengths(), low)
        if high is not None:
            within = (pc.less if kwargs.get("strict_max") else pc.less_equal)(lengths(), high)
            ok = within if ok is None else pc.and_(ok, within)
        bad = pc.invert(ok)
    else:
        hits = _regex_hits(column, kwargs["regex"])
        bad = hits if kind == "expect_column_values_to_not_match_regex" else pc.invert(hits)
    return pc.and_(pc.fill_null(bad, False), pc.is_valid(column))  # GX counts no null as unexpected here


def unexpected(compiled: Plan, records: pa.Table, lengths: dict[str, pa.Array] | None = None) -> list[pa.Array]:
    """Per expectation, in suite order: which rows of ``records`` it finds unexpected. Rows are independent, so a
    batch may be evaluated in parts and the parts concatenated (ingest does, while each part is in cache).
    ``lengths``: text columns' lengths in code points, when the caller has them already."""
    columns: dict[str, pa.Array] = {}
    lengths = dict(lengths or {})
    masks = []
    for exp, kwargs in compiled.steps:
        name = kwargs["column"]
        if name not in columns:
            columns[name] = _text(records, name)
        column = columns[name]

        def length(name: str = name, column: pa.Array = column) -> pa.Array:
            if name not in lengths:  # the same column's lower and upper bounds are two expectations
                lengths[name] = pc.utf8_length(column)
            return lengths[name]

        masks.append(_unexpected(exp["type"], column, kwargs, length))
    return masks


def verdict(compiled: Plan, records: pa.Table, masks: list[pa.Array | pa.ChunkedArray]) -> SuiteResult:
    """The suite's verdict on ``records`` from :func:`unexpected`'s masks for those same rows (row positions are
    the ids in ``row_failures``)."""
    suite, details = compiled.suite, compiled.details
    n = records.num_rows
    if not n:
        return SuiteResult(suite.name, True, 0, {}, details, [])
    failures: dict[int, list[str]] = {}
    expectations = []
    for (exp, kwargs), bad in zip(compiled.steps, masks, strict=True):
        reason = exp["meta"]["reason"]
        column = _text(records, kwargs["column"])
        rows = pc.indices_nonzero(bad).to_pylist()
        for row in rows:
            failures.setdefault(row, []).append(reason)
        counted = n if exp["type"] == "expect_column_values_to_not_be_null" else n - column.null_count
        percent = len(rows) / counted * 100 if counted else None  # in GX's order: the float must be the same
        success = not rows or (counted > 0 and (counted - len(rows)) / counted >= kwargs.get("mostly", 1.0))
        # By position, not take(): taking from a column of many chunks concatenates them first (a copy of the text).
        values, cut = failing_values({"partial_unexpected_list": [column[i].as_py() for i in rows[:20]]})
        expectations.append({
            "type": exp["type"],
            "column": kwargs["column"],
            "reason": reason,
            "detail": details.get(reason, reason),
            "success": bool(success),
            "element_count": n,
            "unexpected_count": len(rows),
            "unexpected_percent": _json_safe(percent),
            "observed_value": None,
            "kwargs": {k: _json_safe(v) for k, v in kwargs.items()},
            "failing_values": values,
            "values_cut": cut,
        })
    return SuiteResult(suite.name, all(e["success"] for e in expectations), n, failures, details, expectations)


def evaluate(records: pa.Table, cfg: Any, suite: SuiteSpec) -> SuiteResult | None:
    """The suite's verdict on ``records`` (row positions are the ids in ``row_failures``), or None when the suite
    uses an expectation this module does not evaluate: then run GX (:func:`clm_lib.validation.suite.validate`)."""
    compiled = plan(cfg, suite, records.column_names)
    return None if compiled is None else verdict(compiled, records, unexpected(compiled, records))
