"""LakeMaintenanceOperator on a real lake and database: compacts, then vacuums keeping protected versions."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from clm_lib.airflow.operators.maintenance import LAKE_TABLES, LakeMaintenanceOperator
from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun


def _rows(ids):
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "task": ["routers"] * n,
            "prompt": ids,
            "response": ["ok"] * n,
            "split": ["train"] * n,
            "source": ["t"] * n,
            "batch_id": ["b"] * n,
            "line": list(range(n)),
            "ingested_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
            "metadata": ["{}"] * n,
        }
    )


def test_the_dag_lists_every_lake_table():
    assert LAKE_TABLES == lake.TABLES


def test_compacts_then_vacuums_keeping_the_version_a_registered_model_read(env_cfg, monkeypatch):
    monkeypatch.setenv("CLM__LAKE__VACUUM_RETENTION_HOURS", "0")
    lake.overwrite(env_cfg, "curated", _rows(["a"]))  # v0: read by model version 1
    lake.overwrite(env_cfg, "curated", _rows(["b"]))  # v1
    lake.append(env_cfg, "curated", _rows(["c"]))  # v2: a second small file
    with session_scope(env_cfg.database_url) as s:
        s.add(
            TrainingRun(
                id="r1", status="succeeded", model_version="1", base_model="tiny", config_hash="h", curated_version=0
            )
        )
    op = LakeMaintenanceOperator(task_id="maintain_curated", table="curated")
    out = op.execute({"dag": SimpleNamespace(dag_id="clm_lake_maintenance"), "dag_run": None})
    assert out["optimize"]["version"] == 3 and out["optimize"]["files_removed"] == 2
    # The two small files compaction replaced go; v0's file stays though no current version references it.
    assert out["vacuum"]["removed"] == 2 and list(out["vacuum"]["protected"]) == [0]
    assert lake.read_table(env_cfg, "curated", version=0)["id"].to_pylist() == ["a"]
    assert sorted(lake.read_table(env_cfg, "curated")["id"].to_pylist()) == ["b", "c"]
