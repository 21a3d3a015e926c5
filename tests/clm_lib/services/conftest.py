"""A clm config whose home is a temp folder, with no outside overrides leaking into the runtime code."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def runtime_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from clm_lib.config import load_config

    # ClmConfig.home reads $CLM_HOME itself, so the environment (not load_config's environ) must point at tmp.
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    for var in ("MLFLOW_TRACKING_URI", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "CLM_DATABASE_URL", "CLM_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    return load_config()
