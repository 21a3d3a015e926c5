"""Fault campaign: SIGKILL a real promotion or rollback process at each step, then recover the normal way (the
Airflow task retried, or the reconciler when nobody retries), and check that the ``champion`` alias names a
registered version that serves 100 % of traffic, with no deployment left half-done. The table of steps and
outcomes is in docs/reliability.md ("Promotion and rollback").

The serving slots are the fake backend kept in a file (``filebackend.py``): what the killed process set stays set,
as a real router's weights would. clm's database and MLflow's store are real (SQLite).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from clm_lib.config import load_config
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import Deployment
from clm_lib.deploy.plan import ACTIVE
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import deploy, start
from clm_lib.errors import DeployError
from clm_lib.registry.mlflow_registry import aliases, client

from .campaign import LEASE_S, promotion_tasks
from .conftest import FAST
from .filebackend import FileBackend

REPO = Path(__file__).resolve().parents[3]


def _env(home: Path) -> dict[str, str]:
    return {
        "CLM_HOME": str(home),
        "CLM_DATABASE_URL": f"sqlite:///{home / 'clm.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "CLM_TEST_BACKEND_FILE": str(home / "slots.json"),
        **FAST,
    }


def _cfg(home: Path):
    cfg = load_config(environ=_env(home))
    cfg.deploy.lock_lease_seconds = LEASE_S
    return cfg


def _register(cfg) -> str:
    """A registered version with its evaluation, made challenger (the ``register_version`` fixture, module-wide)."""
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.registry.mlflow_registry import move_alias

    c, name = client(cfg), cfg.registry.model_name
    if not c.search_registered_models(filter_string=f"name='{name}'"):
        c.create_registered_model(name)
    version = str(c.create_model_version(name, source="file:///nowhere").version)
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id=f"run-{version}", status="succeeded", base_model="b", config_hash="h",
                          model_version=version, tasks=["routers"]))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id=f"run-{version}", model_version=version, tasks=["routers"],
                         scores={"routers": 90.0}, matrix=[[90.0]], average_accuracy=90.0))  # fmt: skip
        move_alias(cfg, s, "challenger", version, actor="test", reason="candidate")
    return version


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, _mlflow_template):
    """v1 then v2 promoted through the canary (v2 serves, v1 warm in the other slot); v3 registered as challenger."""
    import shutil

    home = tmp_path_factory.mktemp("baseline")
    shutil.copy(_mlflow_template, home / "mlflow.db")
    cfg = _cfg(home)
    upgrade(cfg.database_url)
    be = FileBackend(home / "slots.json")
    for n in range(2):
        _register(cfg)
        assert promotion_tasks(cfg, be, home / f"xcom-{n}") == "promoted"
    _register(cfg)
    assert (be.serving(), aliases(cfg)) == ("2", {"champion": "2", "previous": "1", "challenger": "3"})
    return home


def _copy(baseline: Path, home: Path) -> None:
    home.mkdir()
    for name in ("clm.db", "mlflow.db"):
        with sqlite3.connect(baseline / name) as src, sqlite3.connect(home / name) as dst:
            src.backup(dst)  # a consistent copy, WAL included
    (home / "slots.json").write_text((baseline / "slots.json").read_text())


def _child(home: Path, *args: str, fault: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLM", "MLFLOW"))}
    env.update(_env(home), CLM_FAULT_AT=fault, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "tests.clm_lib.deploy.campaign", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def _killed(home: Path, *args: str, fault: str) -> None:
    killed = _child(home, *args, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"fault injected at {fault.split('@')[0]}" in killed.stderr


def _settled(cfg, be: FileBackend) -> dict:
    """The invariants after recovery, and what they came to."""
    names = aliases(cfg)
    champion = names.get("champion")
    assert champion is not None, "no champion alias"
    client(cfg).get_model_version(cfg.registry.model_name, champion)  # registered: loadable
    serving = {s.slot: s for s in be.status().values() if s.weight == 100}
    assert [(s.version, s.healthy) for s in serving.values()] == [(champion, True)], be.status()
    with session_scope(cfg.database_url) as s:
        rows = s.scalars(select(Deployment).order_by(Deployment.id)).all()
        open_rows = [(d.id, d.kind, d.status) for d in rows if d.status in (*ACTIVE, "pending")]
        statuses = [(d.kind, d.version, d.status) for d in rows]
    assert open_rows == [], f"deployments left open: {open_rows}"
    return {"champion": champion, "previous": names.get("previous"), "deployments": statuses[2:]}


# (fault point, champion after the retry, champion after the reconciler ends the dead promotion; None: the promotion
# had already committed its history, so there is nothing to end and the reconciler only aligns the aliases)
PROMOTION = [
    ("promotion.after_gate", "3", "2"),
    ("promotion.deploy.before_load", "3", "2"),
    ("promotion.deploy.after_load", "3", "2"),
    ("promotion.canary.after_weights@1", "3", "2"),
    ("promotion.canary.after_step@2", "3", "2"),
    ("promotion.canary.after_weights@3", "3", "2"),
    ("promotion.canary.before_baked", "3", "2"),
    ("promotion.complete.after_commit", "3", None),
    ("deploy.before_alias_write@2", "3", None),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "by_retry", "by_reconciler"), PROMOTION)
def test_a_promotion_killed_at_any_step_then_retried_serves_a_champion(point, by_retry, by_reconciler, baseline,
                                                                       tmp_path):  # fmt: skip
    home = tmp_path / "home"
    _copy(baseline, home)
    _killed(home, "promote", str(home / "xcom"), fault=point)
    cfg, be = _cfg(home), FileBackend(home / "slots.json")

    assert promotion_tasks(cfg, be, home / "xcom") == "promoted"  # the task that died, retried, then the rest

    after = _settled(cfg, be)
    assert (after["champion"], after["previous"]) == (by_retry, "2")
    assert after["deployments"][-1] == ("promotion", "3", "promoted")


@pytest.mark.slow
@pytest.mark.parametrize(("point", "by_retry", "by_reconciler"), [p for p in PROMOTION if p[2]])
def test_a_promotion_killed_and_not_retried_is_ended_by_the_reconciler(point, by_retry, by_reconciler, baseline,
                                                                       tmp_path):  # fmt: skip
    from clm_lib.deploy import reconciler

    home = tmp_path / "home"
    _copy(baseline, home)
    _killed(home, "promote", str(home / "xcom"), fault=point)
    cfg, be = _cfg(home), FileBackend(home / "slots.json")
    with session_scope(cfg.database_url) as s:
        dead = s.scalars(select(Deployment.id).where(Deployment.kind == "promotion").order_by(Deployment.id)).all()[-1]

    result = reconciler.reconcile(cfg, backend=be, deployment_id=dead, owner_gone=True)

    assert result.settled, result
    after = _settled(cfg, be)
    assert (after["champion"], after["previous"]) == (by_reconciler, "1")


@pytest.mark.slow
@pytest.mark.parametrize("point", [p[0] for p in PROMOTION if p[2] is None])
def test_a_promotion_killed_after_its_history_commit_gets_its_aliases_from_the_reconciler(point, baseline, tmp_path):
    from clm_lib.deploy import reconciler

    home = tmp_path / "home"
    _copy(baseline, home)
    _killed(home, "promote", str(home / "xcom"), fault=point)
    cfg, be = _cfg(home), FileBackend(home / "slots.json")

    time.sleep(LEASE_S + 0.5)  # the killed holder's lease runs out (the campaign's lease is short)
    result = reconciler.reconcile(cfg, backend=be)  # the periodic check: no retry ever comes for this promotion

    assert result.settled == [] and result.aliases, result
    after = _settled(cfg, be)
    assert (after["champion"], after["previous"]) == ("3", "2")
    assert after["deployments"][-1] == ("promotion", "3", "promoted")


TWICE = "so that a retry does not roll back twice"
ALREADY = "no previous version to roll back to: every earlier champion was rolled back"
# (fault point, a promotion of v3 under way when the rollback starts, how the retry refuses; None: it rolls back)
ROLLBACK = [
    ("rollback.after_intent", False, None),
    ("rollback.before_switch", True, TWICE),
    ("rollback.after_switch", False, TWICE),
    ("rollback.after_commit", False, ALREADY),
    ("deploy.before_alias_write@2", False, ALREADY),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "under_way", "refused"), ROLLBACK)
def test_a_rollback_killed_at_any_step_then_retried_serves_a_champion_and_never_rolls_back_twice(
    point, under_way, refused, baseline, tmp_path
):
    home = tmp_path / "home"
    _copy(baseline, home)
    cfg, be = _cfg(home), FileBackend(home / "slots.json")
    if under_way:
        deploy(cfg, start(cfg, actor="airflow:clm_promotion"), backend=be)  # v3 loaded in v1's slot, no traffic
    _killed(home, "rollback", fault=point)

    if refused:  # nothing moves twice; the aliases are set from clm's history on the way out
        with pytest.raises(DeployError, match=refused):
            rollback(cfg, actor="airflow:otto", reason="campaign", backend=be)
    else:
        rollback(cfg, actor="airflow:otto", reason="campaign", backend=be)

    after = _settled(cfg, be)
    if under_way:  # the rollback only ended the promotion: v2 keeps all traffic and stays champion
        assert (after["champion"], after["previous"]) == ("2", "1")
        assert ("promotion", "3", "aborted") in after["deployments"]
    else:
        assert (after["champion"], after["previous"]) == ("1", None)
        assert after["deployments"][-1] == ("rollback", "1", "completed")
