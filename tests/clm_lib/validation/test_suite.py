import json
import logging

import pyarrow as pa
import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.errors import ConfigError
from clm_lib.validation.suite import load_suite, suite_path, validate


def config(tmp_path, **data):
    environ = {"CLM_HOME": str(tmp_path)}
    environ.update({f"CLM__DATA__{k.upper()}": json.dumps(v) for k, v in data.items()})
    return load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ)


RECORDS = pa.table(
    {
        "task": ["routers", "spaceships", None, "billing", "billing", "billing"],
        "prompt": ["My router reboots", "How do I land?", "Invoice wrong", "hi", "Why was I charged twice?", "x" * 31],
        "response": ["Update firmware", "Gently", "Sorry", "Hello", "   ", "Fine"],
    }
)


def test_shipped_suite_names_a_reason_per_expectation(tmp_path):
    cfg = config(tmp_path)
    suite = load_suite(cfg)
    assert suite_path(cfg) == REPO_ROOT / "include" / "gx" / "curated_records.json"
    assert {"unknown_task", "empty_response", "prompt_too_long", "prompt_too_short"} <= set(suite.reasons)


def test_rows_fail_with_reasons_in_suite_order_and_bounds_from_config(tmp_path):
    cfg = config(tmp_path, max_prompt_chars=30)
    result = validate(RECORDS, cfg)
    assert not result.success and result.evaluated == 6
    assert result.row_failures == {
        1: ["unknown_task"],
        2: ["missing_task"],
        3: ["prompt_too_short"],
        4: ["empty_response"],
        5: ["prompt_too_long"],
    }
    assert result.failed == 5
    assert result.details["prompt_too_long"] == "prompt has more than 30 characters"
    too_long = next(e for e in result.expectations if e["reason"] == "prompt_too_long")
    assert too_long["kwargs"] == {"column": "prompt", "max_value": 30} and too_long["unexpected_count"] == 1


def test_a_record_failing_twice_lists_both_first_one_first(tmp_path):
    cfg = config(tmp_path)
    table = pa.table({"task": ["nope"], "prompt": ["hi"], "response": [None]}, schema=RECORDS.schema)
    assert validate(table, cfg).row_failures == {0: ["unknown_task", "prompt_too_short", "missing_response"]}


def test_clean_records_pass_and_gx_stays_quiet(tmp_path, caplog):
    cfg = config(tmp_path)
    with caplog.at_level(logging.INFO):
        result = validate(RECORDS.slice(0, 1), cfg)
    assert result.success and result.row_failures == {}
    assert not [r for r in caplog.records if r.name.startswith("great_expectations")]
    assert validate(RECORDS.slice(0, 0), cfg).evaluated == 0


def test_a_broken_suite_is_a_config_error_naming_the_file(tmp_path):
    suite = tmp_path / "mine.json"
    suite.write_text(json.dumps({"expectations": [{"type": "expect_column_values_to_not_be_null",
                                                    "kwargs": {"column": "prompt"}}]}))
    with pytest.raises(ConfigError, match=r"mine\.json: expectation 0 needs meta\.reason"):
        load_suite(config(tmp_path, gx_suite=str(suite)))
    with pytest.raises(ConfigError, match=r"cannot read GX suite .*nope\.json"):
        load_suite(config(tmp_path, gx_suite="nope"))
    suite.write_text(json.dumps({"expectations": [{"type": "expect_column_values_to_not_be_null",
                                                    "kwargs": {"column": "ticket"}, "meta": {"reason": "r"}}]}))
    with pytest.raises(ConfigError, match=r"'r' could not run.*ticket"):
        validate(RECORDS, config(tmp_path, gx_suite=str(suite)))
