"""A clm config with short bake windows, a real MLflow registry (SQLite store) and clm's database
(register versions with the ``register_version`` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest

from clm_lib.config import load_config
from clm_lib.deploy.rollout import rollout

from .fakes import FakeBackend

FAST = {
    "CLM__DEPLOY__BAKE_SECONDS": "0.15",
    "CLM__DEPLOY__POLL_SECONDS": "0.05",
    "CLM__DEPLOY__LOCK_WAIT_SECONDS": "5",
    "CLM__DEPLOY__RULES__MIN_REQUESTS": "10",
    "CLM__DEPLOY__RULES__MAX_P95_MS": "500",
}


def make_cfg(tmp_path, db_url: str, mlflow_uri: str, **env: str):
    return load_config(
        environ={
            "CLM_HOME": str(tmp_path / "home"),
            "CLM_DATABASE_URL": db_url,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            **FAST,
            **env,
        }
    )


@pytest.fixture
def deploy_cfg(tmp_path, sqlite_url, mlflow_uri):
    return make_cfg(tmp_path, sqlite_url, mlflow_uri)


@pytest.fixture
def two_promoted(deploy_cfg, register_version):
    """Versions 1 then 2 promoted: 2 serves, 1 stays loaded in the other slot."""
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    v2 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    assert be.serving() == v2
    return deploy_cfg, be, v1, v2
