"""The Validation screen's numbers: GX verdicts stored by the real ingestion path (reader, suite, Delta, clm's
database), read back batch by batch and expectation by expectation, with the failing values."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.reporting import validation, validation_page
from clm_lib.reporting.params import BadFilter, NotFound
from clm_lib.reporting.stores import StoreDown
from clm_lib.validation.suite import MAX_FAILING_VALUES, MAX_VALUE_CHARS, validate
from tests.clm_lib.reporting.data_lake import HOSTILE, LONG_PROMPT
from tests.clm_lib.reporting.validation_lake import build_validation_lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_validation_lake(tmp_path_factory.mktemp("validation") / "home")


def test_a_batch_expectation_by_expectation_with_its_failing_values(lake):
    files = lake.lake.files
    got = validation.get_validation(lake.cfg, files.batch_id)
    by_reason = {e.reason: e for e in got.expectations}

    b = got.batch
    assert (b.batch_id, b.kind, b.suite, b.success) == (files.batch_id, "files", "curated_records", False)
    assert (b.evaluated, b.failed) == (7, 3)  # 9 lines: one unreadable, one duplicate are not validated
    assert b.failed_expectations == ["unknown_task", "prompt_too_long", "empty_response", "response_too_short"]

    unknown = by_reason["unknown_task"]
    assert (unknown.type, unknown.column, unknown.success) == ("expect_column_values_to_be_in_set", "task", False)
    assert (unknown.unexpected_count, unknown.element_count, unknown.failing_values) == (1, 7, ["spaceships"])
    assert "billing" in unknown.kwargs["value_set"] and "routers" in unknown.detail  # parameters filled in
    assert unknown.unexpected_percent == pytest.approx(100 / 7)

    long = by_reason["prompt_too_long"]
    assert long.failing_values == [LONG_PROMPT[:MAX_VALUE_CHARS]] and long.values_cut
    assert long.kwargs == {"column": "prompt", "max_value": 2000}
    assert by_reason["empty_response"].failing_values == [""]  # validated trimmed
    held = by_reason["missing_task"]
    assert held.success and held.unexpected_count == 0 and held.failing_values == []


def test_a_hostile_failing_value_comes_back_as_data(lake):
    got = validation.get_validation(lake.cfg, lake.hostile.batch_id)
    failed = [e for e in got.expectations if not e.success]
    assert [(e.reason, e.failing_values) for e in failed] == [("unknown_task", [HOSTILE])]


def test_failing_values_are_bounded(lake):
    rows = pd.DataFrame({"task": [f"t{i}-" + "z" * 500 for i in range(30)], "prompt": ["a long enough prompt"] * 30,
                         "response": ["fine answer"] * 30})  # fmt: skip
    unknown = next(e for e in validate(rows, lake.cfg).expectations if e["reason"] == "unknown_task")
    assert unknown["unexpected_count"] == 30 and len(unknown["failing_values"]) == MAX_FAILING_VALUES
    assert all(len(v) == MAX_VALUE_CHARS for v in unknown["failing_values"]) and unknown["values_cut"]


def test_batches_with_their_outcome_filter_and_page(lake):
    page = validation.list_validations(lake.cfg)
    ids = [b.batch_id for b in page.items]
    assert page.total == 3
    assert ids == [lake.hostile.batch_id, lake.lake.feedback.batch_id, lake.lake.files.batch_id]  # newest first
    assert [b.success for b in page.items] == [False, True, False]

    failed = validation.list_validations(lake.cfg, outcome="failure")
    assert [b.batch_id for b in failed.items] == [lake.hostile.batch_id, lake.lake.files.batch_id]
    assert failed.filters == {"outcome": "failure"}
    feedback = validation.list_validations(lake.cfg, source="feedback", outcome="success")
    assert [b.batch_id for b in feedback.items] == [lake.lake.feedback.batch_id]
    assert validation.list_validations(lake.cfg, since=datetime(2999, 1, 1)).total == 0
    second = validation.list_validations(lake.cfg, offset=1, limit=1)
    assert (second.total, [b.batch_id for b in second.items]) == (3, [lake.lake.feedback.batch_id])


def test_failure_counts_per_expectation(lake):
    stats = validation.expectation_failures(lake.cfg)
    by_reason = {e.reason: e for e in stats.items}
    assert stats.batches == 3 and stats.items[0].reason == "unknown_task"
    assert (by_reason["unknown_task"].failed_batches, by_reason["unknown_task"].unexpected_rows) == (2, 2)
    assert (by_reason["prompt_too_long"].batches, by_reason["prompt_too_long"].failed_batches) == (3, 1)
    assert by_reason["missing_task"].failed_batches == 0
    assert validation.expectation_failures(lake.cfg, batches=1).batches == 1


def test_unknown_batches_and_bad_filters_are_named(lake):
    with pytest.raises(NotFound, match="nosuchbatch"):
        validation.get_validation(lake.cfg, "nosuchbatch")
    with pytest.raises(BadFilter) as bad:
        validation.list_validations(lake.cfg, outcome="maybe")
    assert bad.value.field == "outcome"
    with pytest.raises(BadFilter) as bad:
        validation.list_validations(lake.cfg, source="carrier-pigeon")
    assert bad.value.field == "source"
    with pytest.raises(BadFilter) as bad:
        validation.expectation_failures(lake.cfg, batches=0)
    assert bad.value.field == "batches"


def test_the_screen_names_bad_filters_unknown_batches_and_a_store_down(lake):
    page = validation_page.build_validation(lake.cfg, {"since": "yesterday"})
    assert page.status == 422 and page.bad_filter.field == "since" and page.validations.total == 3
    missing = validation_page.build_validation(lake.cfg, {}, batch_id="nosuchbatch")
    assert missing.status == 404 and "nosuchbatch" in missing.not_found
    one = validation_page.build_validation(lake.cfg, {}, batch_id=lake.hostile.batch_id)
    assert one.status == 200 and one.batch.batch.failed == 1

    cfg = lake.cfg.model_copy(deep=True)
    cfg.database.url = "postgresql+psycopg2://clm@127.0.0.1:9/clm"
    with pytest.raises(StoreDown) as down:
        validation.list_validations(cfg)
    assert down.value.store == "clm's database" and down.value.since <= datetime.now(UTC)
    page = validation_page.build_validation(cfg, {})
    assert [p.store for p in page.problems] == ["clm's database"] and page.validations is None


def test_a_fresh_install_shows_nothing_and_creates_nothing(tmp_path):
    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path / "new")})
    page = validation_page.build_validation(cfg, {})
    assert page.validations.total == 0 and page.stats.batches == 0 and page.problems == []
    assert not (tmp_path / "new").exists()
