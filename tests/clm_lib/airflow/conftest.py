"""A clm home whose config any process can load from the environment, as Airflow's triggerer and workers do."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env_cfg(cfg, db_url, monkeypatch):
    """``cfg`` on ``db_url``, with CLM_CONFIG/CLM_HOME/CLM_DATABASE_URL set so ``load_config()`` finds the same."""
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    monkeypatch.setenv("CLM_HOME", str(cfg.home))
    monkeypatch.setenv("CLM_DATABASE_URL", db_url)
    cfg.database.url = db_url
    return cfg


@pytest.fixture
def request_drift(env_cfg):
    """Store one drift check that requests a retraining; returns its decision."""
    from clm_lib.drift.config import DriftConfig
    from clm_lib.drift.monitor import run_drift_check

    def make(now):
        # The volume trigger alone requests it, so no detector needs data here.
        settings = DriftConfig(volume={"min_new_rows": 10})
        return run_drift_check(env_cfg, reference=[], current=[], new_rows=20, settings=settings, detectors=[],
                               now=now)
    return make
