"""``clm config``: show, set, history, diff and revert through the CLI, with refusals as one-line errors."""

from __future__ import annotations

import getpass
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from clm_lib.cli import cli
from clm_lib.config import DEFAULT_CONFIG, load_config
from clm_lib.config_commands import parse_assignment
from clm_lib.config_store import ConfigChangeError, live_config
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import AuditEntry


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    monkeypatch.delenv("CLM__DEPLOY__BAKE_SECONDS", raising=False)
    return url


def clm(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_set_then_show_history_diff_and_revert(env):
    done = clm("config", "set", "deploy.bake_seconds=30", "deploy.canary_steps=[25, 100]", "--reason", "longer bake")
    assert done.exit_code == 0, done.output
    assert "revision 2 is live" in done.output and "deploy.bake_seconds: 5.0 -> 30.0" in done.output

    shown = json.loads(clm("config", "show", "--json").output)
    assert shown["revision"]["number"] == 2 and shown["revision"]["actor"] == f"cli:{getpass.getuser()}"
    fields = {f["path"]: f for s in shown["sections"] for f in s["fields"]}
    assert fields["deploy.bake_seconds"]["value"] == 30.0 and fields["deploy.bake_seconds"]["read_only"] is None
    assert "restart" in fields["server.airflow_port"]["read_only"]
    assert "deploy.bake_seconds = 30.0" in clm("config", "show").output
    assert "deploy.bake_seconds = 5.0" in clm("config", "show", "--version", "1").output

    history = clm("config", "history").output
    assert history.index("#2") < history.index("#1") and "longer bake" in history and "(live)" in history
    assert "deploy.canary_steps: [10, 50, 100] -> [25, 100]" in clm("config", "diff", "1", "2").output

    reverted = clm("config", "revert", "1", "--reason", "too slow")
    assert reverted.exit_code == 0 and "revision 3 is live" in reverted.output
    assert live_config(load_config()).deploy.bake_seconds == 5.0
    with session_scope(env) as s:
        actions = [a for (a,) in s.execute(select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions == ["config.changed", "config.reverted"]


def test_refusals_name_the_field_and_store_nothing(env):
    bad = CliRunner().invoke(cli, ["config", "set", "gate.max_task_drop=-3", "--reason", "x"])
    assert bad.exit_code == 2
    assert "gate.max_task_drop" in bad.output and "greater than or equal to 0" in bad.output
    ro = CliRunner().invoke(cli, ["config", "set", "paths.lake=/tmp/x", "--reason", "x"])
    assert ro.exit_code == 2 and "paths.lake: read-only at run time" in ro.output
    stale = CliRunner().invoke(cli, ["config", "set", "gate.max_task_drop=2", "--base", "7", "--reason", "x"])
    assert stale.exit_code == 2 and "conflict" in stale.output
    missing = CliRunner().invoke(cli, ["config", "show", "--version", "9"])
    assert missing.exit_code == 2 and "no configuration revision 9" in missing.output
    assert "#2" not in clm("config", "history").output


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("deploy.canary_steps=[5, 100]") == ("deploy.canary_steps", [5, 100])
    assert parse_assignment("deploy.rules.min_feedback_mean=null") == ("deploy.rules.min_feedback_mean", None)
    with pytest.raises(ConfigChangeError, match=r"section\.field=value"):
        parse_assignment("deploy.bake_seconds")
