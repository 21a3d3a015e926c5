"""Restoring a lake table, on real Delta tables, and which versions maintenance must keep."""

import pytest
from sqlalchemy import select

from clm_lib.data import lake
from clm_lib.data.ingest import curated_rows_since, held_out, ingest_file
from clm_lib.data.versions import UnknownVersion, protected_versions, restore
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, TrainingRun
from clm_lib.errors import ClmError


def _ingest(cfg, write_jsonl, record, name, ids):
    return ingest_file(cfg, write_jsonl(cfg.landing_dir / name, [record(i) for i in ids]))


def test_restore_writes_a_new_version_equal_to_the_old_one_and_audits_it(lake_cfg, record, write_jsonl):
    a = _ingest(lake_cfg, write_jsonl, record, "a.jsonl", range(10))
    _ingest(lake_cfg, write_jsonl, record, "b.jsonl", range(10, 25))
    old = sorted(lake.read_table(lake_cfg, "curated", version=a.curated_version)["id"].to_pylist())
    done = restore(lake_cfg, "curated", a.curated_version, actor="cli:alice", reason="bad batch b")
    assert (done.restored_version, done.from_version, done.new_version) == (0, 1, 2)
    assert lake.table_version(lake_cfg, "curated") == 2
    assert sorted(lake.read_table(lake_cfg, "curated")["id"].to_pylist()) == old
    assert lake.read_table(lake_cfg, "curated", version=1).num_rows == 25  # the undone version stays readable
    with session_scope(lake_cfg.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "data.restored")).one()
        assert (entry.actor, entry.target, entry.from_value, entry.to_value, entry.reason) == (
            "cli:alice",
            "lake:curated",
            "1",
            "0",
            "bad batch b",
        )


def test_training_after_a_restore_reads_the_restored_rows(lake_cfg, record, write_jsonl):
    a = _ingest(lake_cfg, write_jsonl, record, "a.jsonl", range(40))
    _ingest(lake_cfg, write_jsonl, record, "b.jsonl", range(40, 80))
    restore(lake_cfg, "curated", a.curated_version, actor="t", reason="undo b")
    assert curated_rows_since(lake_cfg, None).num_rows == 40  # what a first training run reads
    assert set(curated_rows_since(lake_cfg, None)["batch_id"].to_pylist()) == {a.batch_id}
    assert held_out(lake_cfg).num_rows == held_out(lake_cfg, version=a.curated_version).num_rows


def test_rows_a_restore_removed_can_be_ingested_again_from_a_new_file(lake_cfg, record, write_jsonl):
    a = _ingest(lake_cfg, write_jsonl, record, "a.jsonl", range(10))
    _ingest(lake_cfg, write_jsonl, record, "b.jsonl", range(10, 20))
    restore(lake_cfg, "curated", a.curated_version, actor="t", reason="undo b")
    again = _ingest(lake_cfg, write_jsonl, record, "b-fixed.jsonl", range(10, 20))
    assert (again.rows_curated, again.rows_duplicate) == (10, 0)
    assert lake.read_table(lake_cfg, "curated").num_rows == 20


def test_restore_refuses_an_unknown_table_or_version_or_no_reason(lake_cfg, record, write_jsonl):
    with pytest.raises(UnknownVersion, match="'curated' has no version 0: it was never written"):
        restore(lake_cfg, "curated", 0, actor="t", reason="r")
    _ingest(lake_cfg, write_jsonl, record, "a.jsonl", range(3))
    with pytest.raises(UnknownVersion, match="unknown lake table 'nope'"):
        restore(lake_cfg, "nope", 0, actor="t", reason="r")
    with pytest.raises(UnknownVersion, match=r"'curated' has no version 7 \(versions 0 to 0\)"):
        restore(lake_cfg, "curated", 7, actor="t", reason="r")
    with pytest.raises(ClmError, match="needs a reason"):
        restore(lake_cfg, "curated", 0, actor="t", reason="  ")
    assert lake.table_version(lake_cfg, "curated") == 0


def _run(s, run_id, *, status="succeeded", model_version=None, parent=None, curated=None, previous=None, replay=None):
    s.add(
        TrainingRun(
            id=run_id,
            status=status,
            model_version=model_version,
            parent_model_version=parent,
            base_model="tiny",
            config_hash="h",
            curated_version=curated,
            previous_curated_version=previous,
            replay_version=replay,
        )
    )


def test_protected_versions_are_registered_deployed_and_running_runs(lake_cfg):
    with session_scope(lake_cfg.database_url) as s:
        _run(s, "r1", model_version="1", curated=2)
        _run(s, "r2", model_version="2", parent="1", curated=5, previous=2, replay=1)
        _run(s, "r3", status="failed", curated=7)  # produced nothing: nothing depends on it
        _run(s, "r4", status="running", curated=9, previous=5)
        s.add(
            Deployment(
                kind="promotion",
                model_name="m",
                version="2",
                from_version="1",
                strategy="canary",
                status="promoted",
                actor="t",
            )
        )
    curated = protected_versions(lake_cfg, "curated")
    assert sorted(curated) == [2, 5, 9]
    assert any("model version 1 (deployed" in why for why in curated[2])
    assert curated[9] == ["training run r4 under way (curated_version)"]
    assert sorted(protected_versions(lake_cfg, "replay")) == [1]
    assert protected_versions(lake_cfg, "raw") == {}
    with pytest.raises(UnknownVersion, match="'nope'"):
        protected_versions(lake_cfg, "nope")


def test_a_vacuumed_version_cannot_be_restored_and_nothing_is_audited(lake_cfg, record, write_jsonl):
    from clm_lib.data import maintenance

    first = _ingest(lake_cfg, write_jsonl, record, "a.jsonl", range(5))
    lake.overwrite(lake_cfg, "curated", lake.read_table(lake_cfg, "curated").slice(0, 2))
    lake_cfg.lake.vacuum_retention_hours = 0
    assert maintenance.vacuum(lake_cfg, "curated", dry_run=False).removed  # version 0's file is gone
    with pytest.raises(ClmError, match=r"cannot be restored to version 0: .*missing file"):
        restore(lake_cfg, "curated", first.curated_version, actor="t", reason="too late")
    with session_scope(lake_cfg.database_url) as s:
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "data.restored")).all() == []
