"""Fault campaign, training: SIGKILL a real ``run_update`` process at each step, run the update again as the Airflow
task's retry does (same operator, same inputs), check the runs' rows are consistent, nothing is left ``running`` and a
checkpoint is resumed rather than restarted. The table is in docs/reliability.md ("Training and registration").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import select

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import lake
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import TrainingRun
from clm_lib.demo.stream import generate_task
from clm_lib.training.loop import latest_checkpoint
from clm_lib.training.recipe import SUMMARY_FILE
from clm_lib.training.update import plan_update, run_update

TINY = REPO_ROOT / "include" / "tiny.yaml"
DAG = "clm_continual_training"
CHILD = (
    "import sys; from clm_lib.config import load_config; from clm_lib.training.update import plan_update, run_update; "
    "cfg = load_config(); run_update(cfg, trigger={'kind': 'test'}, plan=plan_update(cfg, force=True), "
    f"airflow_dag_id={DAG!r}, airflow_run_id=sys.argv[1])"
)


def _home(tmp_path: Path, tiny_base: Path, mlflow_uri: str) -> dict[str, str]:
    """A clm home with 48 curated training rows and nothing trained yet."""
    env = {"CLM_CONFIG": str(TINY), "CLM_HOME": str(tmp_path / "home"), "CLM__MODEL__BASE_PATH": str(tiny_base),
           "MLFLOW_TRACKING_URI": mlflow_uri, "CLM__TRAINING__MAX_STEPS": "8",
           "CLM__TRAINING__CHECKPOINT_EVERY": "4"}  # fmt: skip
    cfg = load_config(TINY, environ=env)
    upgrade(cfg.database_url)
    now = datetime.now(UTC)
    rows = [{"id": f"routers-{i}", **r, "split": "train", "source": "t", "batch_id": "b", "line": i,
             "ingested_at": now, "metadata": "{}"} for i, r in enumerate(generate_task("routers", 48, 0))]  # fmt: skip
    lake.append(cfg, "curated", pa.Table.from_pylist(rows))
    return env


def _update(cfg, airflow_run_id: str) -> TrainingRun:
    return run_update(cfg, trigger={"kind": "test"}, plan=plan_update(cfg, force=True), airflow_dag_id=DAG,
                      airflow_run_id=airflow_run_id)  # fmt: skip


def _weights(run: TrainingRun) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run.output_dir) / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_base, _mlflow_template) -> dict[str, torch.Tensor]:
    """The adapter the same update trains when nothing kills it."""
    root = tmp_path_factory.mktemp("baseline")
    mlflow_db = root / "mlflow.db"
    mlflow_db.write_bytes(_mlflow_template.read_bytes())
    cfg = load_config(TINY, environ=_home(root, tiny_base, f"sqlite:///{mlflow_db}"))
    return _weights(_update(cfg, "manual__baseline"))


@pytest.fixture
def env(tmp_path, tiny_base, mlflow_uri, monkeypatch) -> dict[str, str]:
    values = _home(tmp_path, tiny_base, mlflow_uri)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLM_FAULT_AT", raising=False)
    return values


def _retry(airflow_run_id: str) -> None:
    """Airflow's retry of the same task instance: a new process, as in production (one test process that ran
    other tests first is no stand-in for it: what they left in it must not decide whether a checkpoint resumes)."""
    env = {k: v for k, v in os.environ.items() if k != "CLM_FAULT_AT"}
    done = subprocess.run([sys.executable, "-c", CHILD, airflow_run_id], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _kill(point: str, airflow_run_id: str) -> None:
    env = {**os.environ, "CLM_FAULT_AT": point}
    killed = subprocess.run([sys.executable, "-c", CHILD, airflow_run_id], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"fault injected at {point.split('@')[0]}" in killed.stderr


def _runs(cfg) -> list[TrainingRun]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(TrainingRun).order_by(TrainingRun.started_at)))


# (kill point, checkpoint step the retry resumes from: None = trains from the start). checkpoint_every 4 of 8 steps.
CASES = [
    ("train.mid_step@6", 4),  # step 6 half done; step-000004 on disk
    ("train.mid_checkpoint@2", 4),  # step-000008 half written (a .tmp folder): step-000004 is the newest complete one
    ("train.after_adapter_saved", 8),  # trained and saved, the replay buffer not yet refilled
    # The replay buffer already refilled: the retry reads the version the killed try read, so the inputs match.
    ("train.before_succeeded", 8),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "resumed_from"), CASES)
def test_a_kill_at_any_step_then_the_retry_leaves_one_succeeded_run(point, resumed_from, env, baseline):
    cfg = load_config()
    _kill(point, "manual__1")
    [killed] = _runs(cfg)
    assert killed.status == "running"  # what the kill leaves: the row nobody will ever finish

    _retry("manual__1")

    killed, done = _runs(cfg)
    assert (done.status, done.metrics["steps"]) == ("succeeded", 8)
    assert killed.status == "interrupted" and "a retry of the same Airflow task" in killed.error
    summary = json.loads((Path(done.output_dir) / SUMMARY_FILE).read_text())
    assert summary["resumed_from_step"] == resumed_from
    if resumed_from is not None:
        assert f"resumed by {done.id}" in killed.error
        assert latest_checkpoint(Path(killed.output_dir) / "checkpoints") is None  # moved, not copied
        weights = _weights(done)
        assert weights.keys() == baseline.keys()
        assert all(torch.equal(weights[k], baseline[k]) for k in weights), "resumed, it must end as if never stopped"
    assert not plan_update(cfg, force=True).should_train  # the data counts as trained on: no second update of it
    assert lake.table_version(cfg, "replay") is not None


@pytest.mark.slow
def test_a_dead_run_of_another_dag_run_is_marked_interrupted_not_left_running(env):
    cfg = load_config()
    _kill("train.mid_step@6", "manual__1")
    later = _update(cfg, "scheduled__2")  # not a retry: a later DAG run finds the dead row
    killed, done = _runs(cfg)
    assert (done.id, done.status) == (later.id, "succeeded")
    assert killed.status == "interrupted" and "is gone" in killed.error
    owner = json.loads((Path(killed.output_dir) / "owner.json").read_text())
    assert owner["pid"] != os.getpid() and f"process {owner['pid']}" in killed.error
    summary = json.loads((Path(done.output_dir) / SUMMARY_FILE).read_text())
    assert summary["resumed_from_step"] is None  # another DAG run's checkpoint is not adopted
