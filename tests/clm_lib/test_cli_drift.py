"""`clm drift check`: the scheduled check by hand, on a real lake and database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from clm_lib.cli import cli

REPO = Path(__file__).resolve().parents[2]


def test_drift_check_reports_every_detector_and_the_decision(tmp_path, monkeypatch, mlflow_uri):
    from clm_lib.config import load_config
    from clm_lib.data import lake
    from clm_lib.db import upgrade
    from clm_lib.demo.stream import generate_task

    env = {"CLM_HOME": str(tmp_path / "home"), "CLM_CONFIG": str(REPO / "include" / "clm.yaml"),
           "MLFLOW_TRACKING_URI": mlflow_uri}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLM_DATABASE_URL", raising=False)
    cfg = load_config(environ=dict(os.environ))
    upgrade(cfg.database_url)
    now = datetime.now(UTC)
    lake.append(cfg, "curated", pa.Table.from_pylist([
        {**r, "id": f"r{i}", "split": "train", "source": "t", "batch_id": "b", "line": i, "ingested_at": now,
         "metadata": "{}"} for i, r in enumerate(generate_task("billing", 250, 3))
    ]))

    text = CliRunner().invoke(cli, ["drift", "check"], env=env, catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert "volume" in text.output and "insufficient data" in text.output  # nothing trained: nothing to compare
    assert "retrain: volume: 250 new curated rows and no model trained yet" in text.output

    as_json = CliRunner().invoke(cli, ["drift", "check", "--json"], env=env, catch_exceptions=False)
    decision = json.loads(as_json.output)
    assert decision["retrain"] is True and decision["new_rows"] == 250
    assert {r["detector"] for r in decision["results"]} >= {"embedding_mmd", "text_stats", "task_mix", "volume"}
