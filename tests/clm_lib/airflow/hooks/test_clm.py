"""ClmHook and the operators' ``cfg``: the config of the connection they are given, through the one resolver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clm_lib.airflow.hooks.clm import ClmHook
from clm_lib.airflow.operators.base import ClmBaseOperator
from clm_lib.errors import ConfigError


def _conn(database_url: str) -> str:
    return json.dumps({"conn_type": "clm", "extra": {"database_url": database_url}})


REPO = Path(__file__).resolve().parents[4]
ENV_DB = "sqlite:///from-env.db"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The shipped config under tmp_path, its database named by the environment, no connection."""
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_DATABASE_URL", ENV_DB)
    monkeypatch.delenv("AIRFLOW_CONN_CLM_DEFAULT", raising=False)
    return monkeypatch


def test_the_hook_is_the_clm_connection_type_on_clm_default():
    hook = ClmHook()

    assert (hook.clm_conn_id, hook.conn_type, hook.conn_name_attr) == ("clm_default", "clm", "clm_conn_id")
    assert ClmBaseOperator(task_id="t").clm_conn_id == "clm_default"


def test_without_a_connection_the_hook_reads_the_environment(env):
    hook = ClmHook()

    assert hook.get_conn() is hook.config  # one resolution per hook instance
    assert hook.config.database_url == ENV_DB


def test_the_hook_and_operators_use_the_connection_they_are_given(env):
    env.setenv("AIRFLOW_CONN_CLM_DEFAULT", _conn("sqlite:///default.db"))
    env.setenv("AIRFLOW_CONN_CLM_STAGING", _conn("sqlite:///staging.db"))

    assert ClmHook().config.database_url == "sqlite:///default.db"
    assert ClmHook("clm_staging").config.database_url == "sqlite:///staging.db"
    assert ClmBaseOperator(task_id="t").cfg.database_url == "sqlite:///default.db"
    op = ClmBaseOperator(task_id="t", clm_conn_id="clm_staging")
    assert op.cfg.database_url == "sqlite:///staging.db"

    env.setenv("AIRFLOW_CONN_CLM_STAGING", _conn("sqlite:///staging-2.db"))
    assert op.cfg.database_url == "sqlite:///staging-2.db"  # each run resolves again: no stale connection


def test_the_hook_passes_its_config_path(env, tmp_path):
    bad = tmp_path / "clm.yaml"
    bad.write_text("training: {max_steps: -1}\n")

    with pytest.raises(ConfigError, match="max_steps"):
        _ = ClmHook(config_path=str(bad)).config


def test_a_broken_connection_fails_the_hook_with_its_name(env):
    env.setenv("AIRFLOW_CONN_CLM_DEFAULT", json.dumps({"conn_type": "clm", "extra": "not json"}))

    with pytest.raises(ConfigError, match="Airflow connection 'clm_default': extra is not valid JSON"):
        _ = ClmHook().config
