"""The data ingestion screen's numbers, on a real lake made by ingesting small generated files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.reporting import display, ingestion, ingestion_page, quarantine, reads, volume
from clm_lib.reporting.params import BadFilter, NotFound
from clm_lib.reporting.stores import StoreDown
from tests.clm_lib.reporting.data_lake import HOSTILE, LONG_PROMPT, build_lake, reasons


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_lake(tmp_path_factory.mktemp("ingestion") / "home")


def test_batches_per_source_reconcile_with_what_ingest_reported(lake):
    summary = ingestion.ingestion_summary(lake.cfg, hours=6)
    by_kind = {s.kind: s for s in summary.sources}

    assert set(by_kind) == {"files", "feedback"}  # webhook and kafka appear once they have batches
    for kind, result in (("files", lake.files), ("feedback", lake.feedback)):
        s = by_kind[kind]
        assert (s.batches, s.statuses) == (1, {"committed": 1})
        assert (s.rows_in, s.rows_curated, s.rows_quarantined, s.rows_duplicate) == (
            result.rows_in,
            result.rows_curated,
            result.rows_quarantined,
            result.rows_duplicate,
        )
        assert s.reconciles and s.unreconciled == []
    assert by_kind["files"].rows_in == 9 and by_kind["feedback"].rows_duplicate == 1
    assert summary.problems == [] and summary.running == 0


def test_tables_hold_what_the_batches_say(lake):
    checks = {r.table: r for r in ingestion.ingestion_summary(lake.cfg).reconciliation}

    assert (checks["raw"].batches_say, checks["raw"].table_holds) == (12, 12)
    assert (checks["curated"].batches_say, checks["curated"].table_holds) == (6, 6)
    # the review queue's correction is in quarantine too, but no batch wrote it
    assert (checks["quarantine"].batches_say, checks["quarantine"].table_holds) == (4, 4)
    assert all(c.ok for c in checks.values())


def test_a_row_written_behind_the_batches_back_is_a_difference(tmp_path):
    from clm_lib.data import lake as delta

    small = build_lake(tmp_path / "home")
    delta.append(small.cfg, "curated", delta.read_table(small.cfg, "curated").slice(0, 1))

    curated = {r.table: r for r in ingestion.ingestion_summary(small.cfg).reconciliation}["curated"]
    assert (curated.batches_say, curated.table_holds, curated.ok) == (6, 7, False)


def test_per_task_and_per_reason_breakdowns(lake):
    summary = ingestion.ingestion_summary(lake.cfg)
    tasks = {t.task: (t.curated, t.quarantined) for t in summary.tasks}
    by_reason = {r.reason: r for r in summary.reasons}

    assert tasks["routers"] == (4, 3)  # quarantined: too long prompt, empty response, the correction
    assert tasks["billing"] == (1, 0) and tasks["thermostats"] == (1, 0)
    assert tasks["spaceships"] == (0, 1) and tasks["(none)"] == (0, 1)  # the malformed line has no task
    expected = reasons(lake.files, lake.feedback)
    assert {r: c.batches_say for r, c in by_reason.items() if c.batches_say} == dict(expected)
    assert all(by_reason[r].in_quarantine == n and by_reason[r].reconciles for r, n in expected.items())
    review = by_reason["pending_review"]
    assert (review.batches_say, review.in_quarantine, review.review_queue, review.reconciles) == (0, 1, 1, True)


def test_rows_and_bytes_per_hour(lake):
    summary = ingestion.ingestion_summary(lake.cfg, hours=3)

    assert len(summary.hourly) == 3 and summary.hourly[-1].start <= datetime.now(UTC)
    assert sum(h.batches for h in summary.hourly) == 2
    assert sum(h.rows_in for h in summary.hourly) == 12
    assert sum(h.rows_curated + h.rows_quarantined + h.rows_duplicate for h in summary.hourly) == 12
    assert sum(h.raw_bytes for h in summary.hourly) > 1000
    chart = volume.hourly_chart(summary.hourly, "rows")
    full = [b for b in chart.bars if b.segments]
    assert len(full) >= 1 and {css for b in full for *_, css in b.segments} == {
        "bar-curated",
        "bar-quarantined",
        "bar-duplicate",
    }
    assert volume.hourly_chart([volume.Hour(datetime.now(UTC))], "bytes") is None


def test_batches_filter_and_page(lake):
    items, total = ingestion.list_batches(lake.cfg)
    assert total == 2 and [b.id for b in items] == [lake.feedback.batch_id, lake.files.batch_id]  # newest first

    assert [b.id for b in ingestion.list_batches(lake.cfg, source="feedback")[0]] == [lake.feedback.batch_id]
    assert [b.id for b in ingestion.list_batches(lake.cfg, source="files")[0]] == [lake.files.batch_id]
    assert ingestion.list_batches(lake.cfg, source="kafka") == ([], 0)
    assert ingestion.list_batches(lake.cfg, status="gave_up") == ([], 0)
    assert ingestion.list_batches(lake.cfg, since=datetime.now(UTC) + timedelta(hours=1)) == ([], 0)
    page, total = ingestion.list_batches(lake.cfg, offset=1, limit=1)
    assert total == 2 and [b.id for b in page] == [lake.files.batch_id]
    assert ingestion.get_batch(lake.cfg, lake.files.batch_id).task_counts == {"billing": 1, "routers": 3}


def test_bad_filters_and_unknown_batches_are_named(lake):
    with pytest.raises(BadFilter) as bad:
        ingestion.list_batches(lake.cfg, source="ftp")
    assert bad.value.field == "source" and "ftp" in str(bad.value)
    with pytest.raises(BadFilter) as bad:
        ingestion.list_batches(lake.cfg, status="done")
    assert bad.value.field == "status"
    with pytest.raises(NotFound, match="no ingestion batch 'nope'"):
        ingestion.get_batch(lake.cfg, "nope")
    with pytest.raises(BadFilter) as bad:
        ingestion.ingestion_summary(lake.cfg, hours=0)
    assert bad.value.field == "hours"


def test_quarantine_browser_filters_pages_and_counts(lake):
    everything = quarantine.quarantine_records(lake.cfg, limit=500)
    assert everything.total == 5 and len(everything.items) == 5
    assert everything.items[0].reason == "pending_review"  # the newest first

    tasks = quarantine.quarantine_records(lake.cfg, task="routers")
    assert tasks.total == 3 and {r.task for r in tasks.items} == {"routers"}
    one = quarantine.quarantine_records(lake.cfg, reason="unknown_task")
    assert one.total == 1 and one.items[0].prompt == HOSTILE and one.items[0].batch_id == lake.files.batch_id
    assert quarantine.quarantine_records(lake.cfg, batch=lake.feedback.batch_id).total == 0
    assert quarantine.quarantine_records(lake.cfg, batch=lake.files.batch_id).total == 4
    feedback = quarantine.quarantine_records(lake.cfg, source="feedback")
    assert feedback.total == 1 and feedback.items[0].kind == "feedback"
    assert quarantine.quarantine_records(lake.cfg, source="files").total == 4

    first, second = (quarantine.quarantine_records(lake.cfg, offset=o, limit=2) for o in (0, 2))
    last = quarantine.quarantine_records(lake.cfg, offset=4, limit=2)
    assert (first.total, len(first.items), len(second.items), len(last.items)) == (5, 2, 2, 1)
    keys = [(r.batch_id, r.line) for p in (first, second, last) for r in p.items]
    assert len(set(keys)) == 5


def test_review_queue_rows_say_what_became_of_them(lake):
    from clm_lib.db import session_scope
    from clm_lib.db.models import ServingFeedback

    (row,) = quarantine.quarantine_records(lake.cfg, reason="pending_review").items
    assert row.in_review_queue and row.feedback_id == lake.feedback_id and row.review_status == "pending_review"
    assert row.batch_id == f"feedback-review-{lake.feedback_id}" and row.source == "feedback:blue"

    with session_scope(lake.cfg.database_url) as s:
        s.get(ServingFeedback, lake.feedback_id).status = "rejected"
    try:
        (row,) = quarantine.quarantine_records(lake.cfg, reason="pending_review").items
        assert row.review_status == "rejected"  # the quarantine row stays; the queue says it was decided
    finally:
        with session_scope(lake.cfg.database_url) as s:
            s.get(ServingFeedback, lake.feedback_id).status = "pending_review"


def test_huge_fields_come_back_cut_and_say_so(lake):
    (row,) = quarantine.quarantine_records(lake.cfg, reason="prompt_too_long", max_chars=1000).items

    assert row.prompt == LONG_PROMPT[:1000] and row.truncated == ["prompt"]
    (row,) = quarantine.quarantine_records(lake.cfg, reason="prompt_too_long").items
    assert row.prompt == LONG_PROMPT and row.truncated == []


def test_clip_bounds_text_and_shows_invisible_characters():
    assert display.clip(HOSTILE, 200) == "<script>alert(1)</script>\\u202egnp.exe\\u0000 and more"
    assert display.clip("x" * 50, 10) == "x" * 10 + "…"
    assert display.clip("two\nlines\tok") == "two\nlines\tok"
    assert display.clip(None) == ""


def test_a_lake_that_cannot_be_reached_is_named_with_since_when(lake, monkeypatch):
    cfg = lake.cfg.model_copy(deep=True)
    cfg.paths.lake = "s3://clm-lake/prefix"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv(
        "CLM_LAKE_STORAGE_OPTIONS",
        '{"max_retries": "0", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}',
    )

    with pytest.raises(StoreDown) as down:
        quarantine.quarantine_records(cfg)
    assert down.value.store == "the lake" and "s3://clm-lake/prefix" in down.value.problem
    with pytest.raises(StoreDown) as again:
        quarantine.quarantine_records(cfg)
    assert again.value.since == down.value.since  # since the first failure, not since the last one

    summary = ingestion.ingestion_summary(cfg)  # clm's database still answers: its numbers stay
    assert [p.store for p in summary.problems] == ["the lake"]
    assert sum(s.rows_in for s in summary.sources) == 12
    assert all(r.table_holds is None and not r.ok for r in summary.reconciliation)

    page = ingestion_page.build_ingestion(cfg, {})
    assert [p.store for p in page.problems] == ["the lake"] and page.status == 200
    assert page.quarantine is None and page.summary is not None

    quarantine.quarantine_records(lake.cfg)  # a good read ends the outage
    assert not reads._lake_down_since


def test_a_database_that_cannot_be_reached_is_named(lake):
    cfg = lake.cfg.model_copy(deep=True)
    cfg.database.url = "postgresql+psycopg2://clm@127.0.0.1:9/clm"

    with pytest.raises(StoreDown) as down:
        ingestion.list_batches(cfg)
    assert down.value.store == "clm's database" and down.value.since <= datetime.now(UTC)
    page = ingestion_page.build_ingestion(cfg, {})
    assert [p.store for p in page.problems] == ["clm's database"]
    assert page.quarantine is not None and page.quarantine.total == 5  # the lake still answers


def test_a_fresh_install_shows_nothing_and_creates_nothing(tmp_path):
    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path / "new")})

    page = ingestion_page.build_ingestion(cfg, {})
    assert page.problems == [] and page.batches == [] and page.quarantine.total == 0
    assert page.summary.sources[0].batches == 0
    assert not (tmp_path / "new").exists()


def test_the_screen_names_a_bad_argument(lake):
    page = ingestion_page.build_ingestion(lake.cfg, {"bsource": "ftp"})
    assert page.status == 422 and page.bad_filter.field == "bsource"
    page = ingestion_page.build_ingestion(lake.cfg, {"offset": "1" * 30})
    assert page.status == 422 and page.bad_filter.field == "offset"
    page = ingestion_page.build_ingestion(lake.cfg, {"reason": "unknown_task", "bsource": "feedback"})
    assert page.status == 200 and page.quarantine.total == 1 and page.batches_total == 1
