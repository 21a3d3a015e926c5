"""Compaction and vacuum on real Delta tables: vacuum never takes the files of a version a model depends on."""

import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from clm_lib.data import lake, maintenance
from clm_lib.data.maintenance import optimize, table_minimum_hours, vacuum
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, TrainingRun
from clm_lib.errors import ClmError

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _rows(ids):
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "task": ["routers"] * n,
            "prompt": [f"p {i}" for i in ids],
            "response": ["ok"] * n,
            "split": ["train"] * n,
            "source": ["test"] * n,
            "batch_id": ["b"] * n,
            "line": list(range(n)),
            "metadata": ["{}"] * n,
            "ingested_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _data_files(cfg, table):
    folder = lake.table_uri(cfg, table)
    return {f for f in os.listdir(folder) if f.endswith(".parquet")}


def _files_of(cfg, table, version):
    return {os.path.basename(f) for f in lake._open(cfg, table, version).file_uris()}


@pytest.fixture
def four_versions(make_cfg):
    """Curated overwritten four times (versions 0-3, one file each), vacuum retention 0 h."""
    cfg = make_cfg()
    cfg.lake.vacuum_retention_hours = 0
    for v in range(4):
        lake.overwrite(cfg, "curated", _rows([f"v{v}-{i}" for i in range(3)]))
    return cfg


def test_vacuum_keeps_a_version_a_registered_model_was_trained_on(four_versions):
    cfg = four_versions
    with session_scope(cfg.database_url) as s:
        s.add(
            TrainingRun(
                id="r1", status="succeeded", model_version="1", base_model="tiny", config_hash="h", curated_version=1
            )
        )
    old, kept = _files_of(cfg, "curated", 0), _files_of(cfg, "curated", 1)
    dry = vacuum(cfg, "curated", dry_run=True)
    assert dry.dry_run and _data_files(cfg, "curated") >= old  # a dry run deletes nothing
    done = vacuum(cfg, "curated", dry_run=False)
    assert list(done.protected) == [1] and "registered model version 1" in done.protected[1][0]
    assert {os.path.basename(f) for f in done.removed} == old | _files_of(cfg, "curated", 2)
    assert sorted(dry.removed) == sorted(done.removed)
    assert kept <= _data_files(cfg, "curated") and not old & _data_files(cfg, "curated")
    assert sorted(lake.read_table(cfg, "curated", version=1)["id"].to_pylist()) == ["v1-0", "v1-1", "v1-2"]
    assert lake.read_table(cfg, "curated").num_rows == 3  # the latest version is whole
    with pytest.raises(Exception, match=r"not found|No such file"):
        lake.read_table(cfg, "curated", version=0)


def test_vacuum_keeps_what_the_live_deployment_descends_from(four_versions):
    cfg = four_versions
    with session_scope(cfg.database_url) as s:
        s.add(
            TrainingRun(
                id="r2",
                status="succeeded",
                model_version="2",
                parent_model_version=None,
                base_model="tiny",
                config_hash="h",
                curated_version=2,
                previous_curated_version=0,
            )
        )
        s.add(
            Deployment(kind="promotion", model_name="m", version="2", strategy="canary", status="promoted", actor="t")
        )
    unprotected = _files_of(cfg, "curated", 1)
    done = vacuum(cfg, "curated", dry_run=False)
    assert sorted(done.protected) == [0, 2] and "deployed" in done.protected[2][0]
    assert lake.read_table(cfg, "curated", version=0).num_rows == 3  # where run r2's new rows started
    assert lake.read_table(cfg, "curated", version=2).num_rows == 3
    assert {os.path.basename(f) for f in done.removed} == unprotected


def test_the_configured_retention_keeps_recent_files(make_cfg):
    cfg = make_cfg()
    assert cfg.lake.vacuum_retention_hours == 168
    for v in range(2):
        lake.overwrite(cfg, "curated", _rows([f"v{v}"]))
    done = vacuum(cfg, "curated", dry_run=False)
    assert done.removed == [] and lake.read_table(cfg, "curated", version=0).num_rows == 1


def test_optimize_compacts_small_files_into_one_new_version(make_cfg):
    cfg = make_cfg()
    for v in range(5):
        lake.append(cfg, "curated", _rows([f"a{v}"]))
    result = optimize(cfg, "curated")
    assert (result.version, result.files_added, result.files_removed) == (5, 1, 5)
    assert len(lake._open(cfg, "curated").file_uris()) == 1
    assert sorted(lake.read_table(cfg, "curated")["id"].to_pylist()) == [f"a{v}" for v in range(5)]
    assert optimize(cfg, "curated").version is None  # already compact: no commit
    assert optimize(cfg, "eval").version is None  # never written
    with pytest.raises(ClmError, match="unknown lake table 'nope'"):
        optimize(cfg, "nope")


def test_table_minimum_hours_reads_the_delta_property():
    assert table_minimum_hours({}) == maintenance.DEFAULT_TABLE_RETENTION_HOURS == 168
    assert table_minimum_hours({"delta.deletedFileRetentionDuration": "interval 2 days"}) == 48
    assert table_minimum_hours({"delta.deletedFileRetentionDuration": "interval 5 hours"}) == 5
    assert table_minimum_hours({"delta.deletedFileRetentionDuration": "soon"}) == 168
