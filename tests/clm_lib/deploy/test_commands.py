"""``clm promote``, ``clm rollback`` and ``clm deployments`` through the real ``clm`` group, on a real registry and
database. Serving is out of the picture (``deploy.strategy: alias``) except where the error comes first."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from click.testing import CliRunner

from clm_lib.cli import cli

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path, sqlite_url, mlflow_uri) -> dict[str, str]:
    return {
        "CLM_HOME": str(tmp_path / "home"),
        "CLM_CONFIG": str(REPO / "include" / "clm.yaml"),
        "CLM_DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "CLM__DEPLOY__STRATEGY": "alias",
    }


@pytest.fixture
def cfg(env):
    from clm_lib.config import load_config

    return load_config(environ=env)


def _run(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_rollback_without_a_champion_is_a_one_line_error(env):
    result = _run(env | {"CLM__DEPLOY__STRATEGY": "canary"}, "rollback")

    assert result.exit_code == 2
    assert result.stderr == "clm: error: nothing to roll back to: clm-assistant has no champion yet\n"


def test_rollback_without_a_previous_version_says_to_name_one(env, cfg, register_version):
    register_version(cfg)
    assert _run(env, "promote").exit_code == 0

    result = _run(env, "rollback", "--reason", "bad answers")

    assert result.exit_code == 2
    assert result.stderr.startswith("clm: error: no previous version to roll back to: version 1 is the first champion")
    assert "with --to VERSION" in result.stderr and "Traceback" not in result.output


def test_promote_rollback_and_the_history(env, cfg, register_version):
    register_version(cfg)
    _run(env, "promote")
    register_version(cfg)
    promoted = _run(env, "promote", "--reason", "new data")
    assert promoted.exit_code == 0
    assert "deployment #2 of version 2:" in promoted.stdout and "champion: 2" in promoted.stdout

    rolled = _run(env, "rollback", "--to", "1", "--reason", "bad answers")

    assert rolled.exit_code == 0
    assert rolled.stdout == "champion: 2 -> 1 (aliases only: no serving); deployment #3\n"
    listing = _run(env, "deployments").stdout.splitlines()
    assert [line.split()[2:7] for line in listing] == [
        ["rollback", "2", "->", "1", "completed"],
        ["promotion", "1", "->", "2", "promoted"],
        ["promotion", "-", "->", "1", "promoted"],
    ]
    assert f"cli:{getpass.getuser()}" in listing[0] and listing[0].endswith("[v2 rolled back by rollback #3]")


def test_reconcile_sets_the_aliases_a_hand_moved_back_from_the_history(env, cfg, register_version):
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version, client

    for _ in range(2):
        register_version(cfg)
        _run(env, "promote")
    client(cfg).set_registered_model_alias(cfg.registry.model_name, CHAMPION, "1")  # behind clm's back

    result = _run(env, "rollback", "--reconcile")

    assert (result.exit_code, result.stdout) == (0, "champion: 1 -> 2\n")
    assert alias_version(cfg, CHAMPION) == "2"
    assert _run(env, "rollback", "--reconcile").stdout == "MLflow's aliases already match clm's history\n"


def test_promote_exits_1_when_the_gate_says_no(env, cfg, register_version):
    register_version(cfg, {"routers": 90.0})
    _run(env, "promote")
    register_version(cfg, {"routers": 10.0})

    result = _run(env, "promote")

    assert result.exit_code == 1
    assert "REGRESSED" in result.stdout and "gate_failed: gate failed against champion 1; champion: 1" in result.stdout


def test_promote_is_refused_when_approval_is_required(env, cfg, register_version):
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    register_version(cfg)

    result = _run(env | {"CLM__DEPLOY__REQUIRE_APPROVAL": "true"}, "promote")

    assert result.exit_code == 2
    assert result.stderr.startswith("clm: error: deploy.require_approval is on: a promotion needs a person's approval")
    with session_scope(cfg.database_url) as s:
        assert history.recent(s, 10) == []


def test_promote_follows_the_live_configuration_revision(env, cfg, register_version):
    """The file (here its environment) says canary; an operator saved ``alias`` as a revision: the shell promotes
    as the DAGs would, with the revision's strategy."""
    from clm_lib import config_store
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    register_version(cfg)
    file_env = env | {"CLM__DEPLOY__STRATEGY": "canary"}
    from clm_lib.config import load_config

    file_cfg = load_config(environ=file_env)
    with session_scope(cfg.database_url) as s:
        config_store.commit_change(s, file_cfg=file_cfg, changes={"deploy.strategy": "alias"}, base_revision=1,
                                   actor="alice", reason="no serving slots on this host")  # fmt: skip

    result = _run(file_env, "promote")

    assert result.exit_code == 0, result.output
    with session_scope(cfg.database_url) as s:
        (deployment,) = history.recent(s, 10)
        assert (deployment.strategy, deployment.status) == ("alias", "promoted")
