"""Great Expectations decides which records are curated: the suite is data, the verdict is per row.

The suite lives in ``include/gx/<data.gx_suite>.json`` (or at a path, when ``gx_suite`` ends in
``.json``). Its bounds are GX suite parameters, ``{"$PARAMETER": "max_prompt_chars"}``, filled from
the ``data`` section of the config at run time, so the JSON never repeats a number the config owns.
Every expectation carries ``meta.reason`` (the code written to quarantine) and ``meta.detail``.

Validation runs in an ephemeral GX context with the ``COMPLETE`` result format, whose
``unexpected_index_list`` names the failing rows: GX, not clm, says which row failed what. Ingestion evaluates
the expectation types it knows on Arrow instead, with GX's semantics and the same verdict shape
(:mod:`clm_lib.validation.native`, checked against this module row for row); other suites run here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm_lib.config import REPO_ROOT, ClmConfig
from clm_lib.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

SUITES_DIR = REPO_ROOT / "include" / "gx"
COLUMNS = ("task", "prompt", "response")

MAX_FAILING_VALUES = 20
"""Failing values kept per expectation (GX's ``partial_unexpected_list``)."""
MAX_VALUE_CHARS = 200
"""A kept failing value longer than this is cut (``values_cut`` says so): records are untrusted and unbounded."""

_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    # The indices pick the failing rows; a short sample of their values is kept for the Validation screen.
    "partial_unexpected_count": 20,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class SuiteSpec:
    """A suite as read from its JSON file."""

    name: str
    path: Path
    expectations: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """Reason codes in suite order, which is also their priority."""
        return [e["meta"]["reason"] for e in self.expectations]


@dataclass
class SuiteResult:
    """GX's verdict on one batch of records."""

    suite: str
    success: bool
    evaluated: int
    """Rows validated."""
    row_failures: dict[int, list[str]]
    """Row position -> reason codes it failed, in suite order (first = the quarantine reason)."""
    details: dict[str, str]
    """Reason code -> words for people, bounds filled in."""
    expectations: list[dict[str, Any]]
    """Per expectation: type, column, reason, detail, success, element_count, unexpected_count,
    unexpected_percent, observed_value, resolved kwargs, and ``failing_values``: at most
    :data:`MAX_FAILING_VALUES` of them, each cut at :data:`MAX_VALUE_CHARS` (``values_cut`` when any was)."""

    @property
    def failed(self) -> int:
        """Rows that failed at least one expectation."""
        return len(self.row_failures)


def suite_path(cfg: ClmConfig) -> Path:
    """The JSON file of the configured suite."""
    name = cfg.data.gx_suite
    return cfg.path(name) if name.endswith(".json") else SUITES_DIR / f"{name}.json"


def load_suite(cfg: ClmConfig) -> SuiteSpec:
    """Read and check the configured suite. Raises :class:`ConfigError` naming the file and what is wrong."""
    path = suite_path(cfg)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"data.gx_suite: cannot read GX suite {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"data.gx_suite: GX suite {path} is not valid JSON: {exc}") from None
    expectations = raw.get("expectations") if isinstance(raw, dict) else None
    if not isinstance(expectations, list) or not expectations:
        raise ConfigError(f"GX suite {path} must be an object with a non-empty 'expectations' list")
    seen: set[str] = set()
    for i, exp in enumerate(expectations):
        reason = (exp.get("meta") or {}).get("reason") if isinstance(exp, dict) else None
        if not isinstance(reason, str) or not reason:
            raise ConfigError(f"GX suite {path}: expectation {i} needs meta.reason (a quarantine code)")
        if reason in seen:
            raise ConfigError(f"GX suite {path}: reason {reason!r} is used by two expectations")
        seen.add(reason)
        if not isinstance(exp.get("type"), str) or not isinstance(exp.get("kwargs"), dict):
            raise ConfigError(f"GX suite {path}: expectation {i} ({reason}) needs 'type' and 'kwargs'")
    return SuiteSpec(raw.get("name") or path.stem, path, expectations, raw.get("meta") or {})


def suite_parameters(cfg: ClmConfig) -> dict[str, Any]:
    """Values a suite may reference as ``{"$PARAMETER": name}``: every field of the data section."""
    return cfg.data.model_dump(mode="json")


@cache
def _gx() -> Any:
    # GX logs ~200 INFO lines ("Skipping registering function ...") while importing, which Airflow's
    # structlog setup prints; they come from stdlib loggers, so raising the level first silences them.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _detail(spec: dict[str, Any], params: dict[str, Any]) -> str:
    shown = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in params.items()}
    text = spec.get("meta", {}).get("detail") or spec["meta"]["reason"]
    try:
        return text.format(**shown)
    except (KeyError, IndexError, ValueError):
        return text


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """GX 1.24 reports errors either flat or keyed by the metric that raised them."""
    if not info:
        return None
    entries = [info, *(v for v in info.values() if isinstance(v, dict))]
    messages = [str(e.get("exception_message")) for e in entries if e.get("raised_exception")]
    return "; ".join(messages) or None


def _json_safe(value: Any) -> Any:
    """``value`` as it can be stored in a JSON column: numbers, text, lists and objects; anything else as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in list(value)[:MAX_FAILING_VALUES]]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in list(value.items())[:MAX_FAILING_VALUES]}
    return str(value)


def failing_values(result: dict[str, Any]) -> tuple[list[str | None], bool]:
    """GX's sample of the failing values, bounded: at most :data:`MAX_FAILING_VALUES`, each as text cut at
    :data:`MAX_VALUE_CHARS`; and whether any value was cut."""
    cut = False
    out: list[str | None] = []
    for value in (result.get("partial_unexpected_list") or [])[:MAX_FAILING_VALUES]:
        if value is None or value != value:  # NaN: a missing value, like None
            out.append(None)
            continue
        text = value if isinstance(value, str) else str(value)
        cut = cut or len(text) > MAX_VALUE_CHARS
        out.append(text[:MAX_VALUE_CHARS])
    return out, cut


def _run(df: pd.DataFrame, suite: SuiteSpec, params: dict[str, Any]) -> Any:
    """One GX run in a throwaway ephemeral context (cheap to build; keeps runs independent)."""
    gx = _gx()
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # GX's default ephemeral config creates a temporary Data Docs folder per context and never removes it.
    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=project)
    asset = context.data_sources.add_pandas("clm").add_dataframe_asset("records")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    try:
        gx_suite = context.suites.add(ExpectationSuite(name=suite.name, expectations=suite.expectations))
    except Exception as exc:  # GX raises several types for a bad expectation; all mean "fix the suite file"
        raise ConfigError(f"GX suite {suite.path} is not valid for Great Expectations: {exc}") from None
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}-run", data=batch_definition, suite=gx_suite)
    )
    return definition.run(
        batch_parameters={"dataframe": df}, expectation_parameters=params, result_format=_RESULT_FORMAT
    )


def validate(records: pa.Table | pd.DataFrame, cfg: ClmConfig, suite: SuiteSpec | None = None) -> SuiteResult:
    """Run the suite on ``records`` (columns task, prompt, response; row positions are the ids used
    in :attr:`SuiteResult.row_failures`)."""
    suite = suite or load_suite(cfg)
    params = suite_parameters(cfg)
    details = {s["meta"]["reason"]: _detail(s, params) for s in suite.expectations}
    df = records if not hasattr(records, "to_pandas") else records.select(list(COLUMNS)).to_pandas()
    df = df.reset_index(drop=True)
    if df.empty:
        return SuiteResult(suite.name, True, 0, {}, details, [])
    outcome = _run(df, suite, params)

    order = {reason: i for i, reason in enumerate(suite.reasons)}
    failures: dict[int, list[str]] = {}
    expectations: list[dict[str, Any]] = []
    for res in sorted(outcome.results, key=lambda r: order.get(r.expectation_config.meta.get("reason"), 0)):
        spec, result = res.expectation_config, res.result or {}
        reason = spec.meta["reason"]
        error = _exception_message(res.exception_info)
        if error:
            raise ConfigError(f"GX suite {suite.path}: expectation {reason!r} could not run: {error}")
        indices = result.get("unexpected_index_list")
        if not res.success and indices is None:
            log.warning(
                "GX suite %s: %s failed for the batch as a whole; it names no rows, so no row is quarantined for it",
                suite.name,
                reason,
            )
        for index in indices or ():
            failures.setdefault(int(index), []).append(reason)  # suite order: the first code is the reason
        kwargs = {k: _json_safe(v) for k, v in spec.kwargs.items() if k != "batch_id"}
        values, cut = failing_values(result)
        expectations.append(
            {
                "type": spec.type,
                "column": kwargs.get("column"),
                "reason": reason,
                "detail": details.get(reason, reason),
                "success": bool(res.success),
                "element_count": result.get("element_count"),
                "unexpected_count": result.get("unexpected_count", 0),
                "unexpected_percent": _json_safe(result.get("unexpected_percent")),
                "observed_value": _json_safe(result.get("observed_value")),
                "kwargs": kwargs,
                "failing_values": values,
                "values_cut": cut,
            }
        )
    return SuiteResult(suite.name, bool(outcome.success), len(df), failures, details, expectations)
