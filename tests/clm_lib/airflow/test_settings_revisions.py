"""resolve_config applies the live configuration revision; a DAG run keeps the one live when it started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from clm_lib import config_store as cs
from clm_lib.airflow.operators.base import ClmBaseOperator
from clm_lib.airflow.settings import resolve_config
from clm_lib.config import DEFAULT_CONFIG
from clm_lib.db import session_scope, upgrade
from clm_lib.errors import ConfigError


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    for key in ("AIRFLOW_CONN_CLM_DEFAULT", "CLM__DATABASE__URL", "CLM__DEPLOY__BAKE_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    return url


def _save(url: str, bake: float, base: int) -> None:
    file_cfg = resolve_config()
    with session_scope(url) as s:
        cs.commit_change(s, file_cfg=file_cfg, changes={"deploy.bake_seconds": bake}, base_revision=base,
                         actor="alice", reason="test")  # fmt: skip


def test_the_newest_revision_applies_from_the_next_resolve(env):
    first = resolve_config()
    assert first.revision == 1
    _save(env, 33, 1)
    again = resolve_config()
    assert (again.revision, again.deploy.bake_seconds) == (2, 33.0)


def test_an_operator_uses_the_revision_live_when_its_dag_run_started(env):
    resolve_config()  # revision 1
    op = ClmBaseOperator(task_id="t")
    op.pre_execute({"dag_run": SimpleNamespace(start_date=datetime.now(UTC))})
    _save(env, 44, 1)  # saved while the run is under way
    assert (op.cfg.revision, op.cfg.deploy.bake_seconds) == (1, 5.0)  # the shipped file's bake window

    next_run = ClmBaseOperator(task_id="t")
    next_run.pre_execute({"dag_run": SimpleNamespace(start_date=datetime.now(UTC) + timedelta(seconds=1))})
    assert (next_run.cfg.revision, next_run.cfg.deploy.bake_seconds) == (2, 44.0)


def test_a_task_refuses_to_run_when_the_revisions_cannot_be_read(env, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'missing.db'}")
    assert resolve_config().revision is None  # a screen still gets the file, to say the store is down
    with pytest.raises(ConfigError, match="cannot read the live configuration revision"):
        resolve_config(as_of=datetime.now(UTC))
