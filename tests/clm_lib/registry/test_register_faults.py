"""Fault campaign, registration: SIGKILL a real ``register_run`` process at each step, run it again (the Airflow
task's retry), check there is exactly one model version per training run, recorded once in clm's DB and audit log,
the challenger, and loadable. The table of steps and outcomes is in docs/reliability.md ("Training and registration").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pyarrow as pa
import pytest
from sqlalchemy import select

from clm_lib import audit
from clm_lib.config import REPO_ROOT, load_config
from clm_lib.db import get_engine, session_scope, upgrade
from clm_lib.db.models import AuditEntry, Evaluation, TrainingRun
from clm_lib.demo.stream import generate_task
from clm_lib.registry.aliases import CHALLENGER
from clm_lib.registry.mlflow_registry import alias_version, client, move_alias, register_run
from clm_lib.serving.model import fetch_version
from clm_lib.training.recipe import train_update

TINY = REPO_ROOT / "include" / "tiny.yaml"
RUN = "run-20260101T000000-fault1"
CHILD = (
    "from clm_lib.config import load_config; from clm_lib.registry.mlflow_registry import register_run; "
    f"register_run(load_config(), {RUN!r}, actor='airflow')"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    """A trained and evaluated run in a clm DB, copied by every test: (clm.db, output folder)."""
    root = tmp_path_factory.mktemp("registered-template")
    cfg = load_config(TINY, environ={"CLM_HOME": str(root / "home"), "CLM__MODEL__BASE_PATH": str(tiny_base)})
    cfg.training.max_steps = 2
    rows = generate_task("routers", 20, 0)
    new = pa.Table.from_pylist([{"id": f"r{i}", **r} for i, r in enumerate(rows)])
    out = root / "runs" / RUN
    train_update(cfg, new_data=new, replay_data=None, parent_adapter_dir=None, output_dir=out, run_id=RUN)
    upgrade(cfg.database_url)
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id=RUN, status="succeeded", base_model=str(tiny_base), config_hash=cfg.config_hash(),
                          curated_version=0, tasks=["routers"], output_dir=str(out)))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id=RUN, tasks=["routers"], scores={"routers": 50.0}, matrix=[[50.0]],
                         average_accuracy=50.0))  # fmt: skip
    get_engine(cfg.database_url).dispose()  # checkpoints SQLite's write-ahead log into clm.db, which tests copy
    return cfg.home / "clm.db", out


@pytest.fixture
def env(tmp_path, trained, tiny_base, mlflow_uri, monkeypatch):
    """A fresh clm home holding the trained run, a fresh MLflow store; this process and the child share both."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(trained[0], home / "clm.db")
    values = {"CLM_CONFIG": str(TINY), "CLM_HOME": str(home), "CLM__MODEL__BASE_PATH": str(tiny_base),
              "MLFLOW_TRACKING_URI": mlflow_uri}  # fmt: skip
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLM_FAULT_AT", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    return values


def _kill(point: str, tmp_path) -> None:
    env = {**os.environ, "CLM_FAULT_AT": point}
    killed = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"fault injected at {point.split('@')[0]}" in killed.stderr


def _check_invariants(cfg) -> str:
    """Exactly one version from the run, recorded once, the challenger, loadable; no MLflow run left running."""
    c = client(cfg)
    name = cfg.registry.model_name
    versions = c.search_model_versions(f"name = '{name}'")
    assert [mv.tags.get("clm.training_run_id") for mv in versions] == [RUN]
    version = str(versions[0].version)
    assert versions[0].tags["clm.mlflow_run_id"] == versions[0].run_id
    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, RUN)
        evaluation = s.scalars(select(Evaluation).where(Evaluation.training_run_id == RUN)).one()
        assert (run.status, run.model_version, evaluation.model_version) == ("succeeded", version, version)
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.action, e.to_value) for e in entries] == [("model.registered", version),
                                                             ("alias.challenger", version)]  # fmt: skip
        assert audit.verify(s).ok
    assert alias_version(cfg, CHALLENGER) == version
    experiment = c.get_experiment_by_name(cfg.registry.experiment)
    statuses = [r.info.status for r in c.search_runs([experiment.experiment_id])]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 1
    base, adapter = fetch_version(cfg, version)
    assert (adapter / "adapter_config.json").is_file() and (base / "config.json").is_file()
    return version


# Every step of register_run at which a kill leaves a distinct state (clm_lib/registry/mlflow_registry.py).
POINTS = [
    "register.while_logging",  # MLflow run started and the model logged, the run still RUNNING, no version
    "register.after_model_logged",  # the MLflow run FINISHED, no version
    "register.after_version_created",  # the version exists in MLflow, clm's DB does not know it
    "register.after_db_commit",  # clm's DB and audit log know it, no challenger alias
    "alias.after_mlflow_write",  # challenger set in MLflow, its audit entry not committed
]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_step_then_the_retry_registers_the_run_exactly_once(point, env, tmp_path):
    cfg = load_config()
    _kill(point, tmp_path)
    version = register_run(cfg, RUN, actor="airflow")  # the Airflow task's retry: same operator, same inputs
    assert _check_invariants(cfg) == version == "1"
    if point == "register.after_model_logged":  # the finished MLflow run of the killed try is the one registered
        assert len(client(cfg).search_runs([client(cfg).get_experiment_by_name("clm").experiment_id])) == 1
    if point == "alias.after_mlflow_write":
        with session_scope(cfg.database_url) as s:
            moved = s.scalars(select(AuditEntry).where(AuditEntry.action == "alias.challenger")).one()
            assert moved.details == {"recorded_on_retry": True}


@pytest.mark.slow
def test_registering_again_changes_nothing_even_after_the_alias_moved_on(env):
    cfg = load_config()
    assert register_run(cfg, RUN) == "1"
    assert register_run(cfg, RUN) == "1"
    assert _check_invariants(cfg) == "1"
    with session_scope(cfg.database_url) as s:  # a later candidate took the alias
        client(cfg).create_model_version(cfg.registry.model_name, source="file:///nowhere")
        move_alias(cfg, s, CHALLENGER, "2", actor="test", reason="a later candidate")
    assert register_run(cfg, RUN) == "1"
    assert alias_version(cfg, CHALLENGER) == "2"
