"""The data versions screen's numbers: Delta history, diffs between versions, and the training runs that read each
version, on a real lake made by ingesting small generated files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from clm_lib.data import lake as delta
from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun
from clm_lib.reporting import data_versions as dv
from clm_lib.reporting.params import NotFound
from tests.clm_lib.reporting.data_lake import build_lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """curated v0 (tickets.jsonl) and v1 (the feedback file); replay v0 then v1 (overwritten); tr-1 read curated
    v0, tr-2 read curated v1 with its new rows after v0 and replay v1."""
    built = build_lake(tmp_path_factory.mktemp("versions") / "home")
    cfg = built.cfg
    curated = delta.read_table(cfg, "curated").sort_by("id")
    delta.overwrite(cfg, "replay", curated.slice(0, 3))
    delta.overwrite(cfg, "replay", curated.slice(1, 3))
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id="tr-1", status="succeeded", base_model="b", config_hash="h", model_version="1",
                          curated_version=0))  # fmt: skip
        s.add(TrainingRun(id="tr-2", status="succeeded", base_model="b", config_hash="h", model_version="2",
                          curated_version=1, previous_curated_version=0, replay_version=1))  # fmt: skip
    built.replay = (curated.slice(0, 3), curated.slice(1, 3))
    return built


def test_every_table_with_its_latest_version_and_rows(lake):
    tables = {t.name: t for t in dv.list_tables(lake.cfg)}

    assert list(tables) == ["raw", "curated", "quarantine", "replay", "eval"]
    assert (tables["raw"].version, tables["raw"].rows) == (1, 12)
    assert (tables["curated"].version, tables["curated"].rows, tables["curated"].files) == (1, 6, 2)
    assert (tables["quarantine"].version, tables["quarantine"].rows) == (1, 5)  # the correction is v1
    assert (tables["replay"].version, tables["replay"].rows, tables["replay"].files) == (1, 3, 1)
    assert not tables["eval"].exists and tables["eval"].version is None
    assert tables["curated"].size_bytes > 0 and tables["curated"].last_operation == "WRITE"


def test_history_names_the_batch_behind_each_version_and_the_runs_that_read_it(lake):
    history = dv.table_history(lake.cfg, "curated")

    assert (history.latest, history.total) == (1, 2)
    v1, v0 = history.commits
    assert (v1.version, v1.rows_added, v1.mode, v1.batches) == (1, 2, "Append", [lake.feedback.batch_id])
    assert (v0.version, v0.rows_added, v0.batches) == (0, 4, [lake.files.batch_id])
    assert [(r.id, r.role) for r in v0.runs] == [("tr-1", "curated_version"), ("tr-2", "previous_curated_version")]
    assert [(r.id, r.role, r.model_version) for r in v1.runs] == [("tr-2", "curated_version", "2")]

    page = dv.table_history(lake.cfg, "curated", offset=1, limit=1)
    assert [c.version for c in page.commits] == [0] and page.total == 2
    quarantine = dv.table_history(lake.cfg, "quarantine")
    assert [c.batches for c in quarantine.commits] == [[], [lake.files.batch_id]]  # v1: the review queue's append
    replay = dv.table_history(lake.cfg, "replay")
    assert [c.mode for c in replay.commits] == ["Overwrite", "Overwrite"]
    assert [[r.id for r in c.runs] for c in replay.commits] == [["tr-2"], []]
    assert dv.table_history(lake.cfg, "eval").commits == []


def test_diff_of_an_append_reads_only_the_new_files(lake):
    diff = dv.diff_versions(lake.cfg, "curated", 0, 1)

    assert (diff.added, diff.removed, diff.files_read) == (2, 0, 1)
    assert {t.task: (t.added, t.removed) for t in diff.tasks} == {
        task: (n, 0) for task, n in lake.feedback.task_counts.items()
    }
    assert diff.batches_added == {lake.feedback.batch_id: 2}
    assert len(diff.samples_added) == 2 and diff.samples_removed == []
    assert {s["batch_id"] for s in diff.samples_added} == {lake.feedback.batch_id}

    back = dv.diff_versions(lake.cfg, "curated", 1, 0, samples=1)
    assert (back.added, back.removed, len(back.samples_removed)) == (0, 2, 1)
    same = dv.diff_versions(lake.cfg, "curated", 1, 1)
    assert (same.added, same.removed, same.files_read, same.tasks) == (0, 0, 0, [])


def test_diff_of_an_overwrite_matches_rows_by_id(lake):
    before, after = lake.replay
    diff = dv.diff_versions(lake.cfg, "replay", 0, 1)

    gone = set(before["id"].to_pylist()) - set(after["id"].to_pylist())
    new = set(after["id"].to_pylist()) - set(before["id"].to_pylist())
    assert (diff.added, diff.removed) == (len(new), len(gone)) == (1, 1)  # two rows are in both versions
    assert {s["id"] for s in diff.samples_added} == new and {s["id"] for s in diff.samples_removed} == gone


def test_diff_of_raw_matches_rows_by_batch_and_line(lake):
    diff = dv.diff_versions(lake.cfg, "raw", 0, 1, samples=50)

    assert diff.added == lake.feedback.rows_in and diff.removed == 0
    assert sorted(s["line"] for s in diff.samples_added) == [1, 2, 3]


def test_unknown_tables_and_versions_are_named(lake):
    with pytest.raises(NotFound, match=r"no version 7 \(latest is 1\)"):
        dv.diff_versions(lake.cfg, "curated", 0, 7)
    with pytest.raises(NotFound, match="'secrets'"):
        dv.table_history(lake.cfg, "secrets")
    with pytest.raises(NotFound, match="'eval' has no version 0: it was never written"):
        dv.runs_reading(lake.cfg, "eval", 0)
    with pytest.raises(NotFound, match="no version 2"):
        dv.runs_reading(lake.cfg, "curated", 2)


def test_runs_reading_a_version(lake):
    assert [(r.id, r.describe) for r in dv.runs_reading(lake.cfg, "curated", 1)] == [
        ("tr-2", "read curated at this version")
    ]
    assert [r.id for r in dv.runs_reading(lake.cfg, "replay", 1)] == ["tr-2"]
    assert dv.runs_reading(lake.cfg, "replay", 0) == []
    assert dv.runs_reading(lake.cfg, "raw", 0) == []  # training reads curated, never raw


def test_the_screen_compares_the_latest_two_versions_by_default(lake):
    page = dv.build_data_versions(lake.cfg, {})
    assert page.status == 200 and page.table == "curated"
    assert (page.diff.from_version, page.diff.to_version, page.diff.added) == (0, 1, 2)

    page = dv.build_data_versions(lake.cfg, {"table": "replay", "from": "0", "to": "1"})
    assert (page.diff.added, page.diff.removed) == (1, 1)
    page = dv.build_data_versions(lake.cfg, {"table": "nope"})
    assert page.status == 404 and "'nope'" in page.not_found
    page = dv.build_data_versions(lake.cfg, {"to": "9"})
    assert page.status == 404 and "no version 9" in page.not_found and page.history is not None
    page = dv.build_data_versions(lake.cfg, {"from": "x"})
    assert page.status == 422 and page.bad_filter.field == "from"


def test_a_rewritten_version_counts_what_really_changed(tmp_path):
    """Rows rewritten into a new file (an overwrite with the same rows) are neither added nor removed."""
    from clm_lib.data.records import empty

    small = build_lake(tmp_path / "home")
    rows = delta.read_table(small.cfg, "curated")
    delta.overwrite(small.cfg, "eval", rows)
    delta.overwrite(small.cfg, "eval", pa.concat_tables([rows.slice(1), empty("eval")]))

    diff = dv.diff_versions(small.cfg, "eval", 0, 1)
    assert (diff.added, diff.removed, diff.files_read) == (0, 1, 2)
