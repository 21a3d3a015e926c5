"""``clm serve`` / ``clm slots`` refuse bad input with ``clm: error: ...`` (exit 2), never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from clm_lib.cli import cli

from .helpers import TINY, free_port


@pytest.fixture
def run(tmp_path, serving_registry):
    env = {
        "CLM_CONFIG": str(TINY),
        "CLM_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": serving_registry["tracking_uri"],
        "CLM__SERVING__ROUTER_PORT": str(free_port()),
        "CLM__SERVING__BLUE_PORT": str(free_port()),
        "CLM__SERVING__GREEN_PORT": str(free_port()),
    }

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env)

    return invoke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve"], "give exactly one of --version N or --alias NAME"),
        (["serve", "--version", "3", "--alias", "champion"], "give exactly one"),
        (["serve", "--version", "99"], "cannot fetch clm-assistant version 99"),
        (["serve", "--version", "latest"], "a model version is a number"),
        (["serve", "--alias", "nobody"], "clm-assistant@nobody does not exist"),
        (["slots", "weights", "blue=60"], "weights must sum to 100"),
        (["slots", "weights", "blue=sixty"], "write weights as slot=percent"),
        (["slots", "weights", "blue=100"], "slot blue has no model deployed"),
        (["slots", "stop", "purple"], "Invalid value for 'SLOT'"),
    ],
)
def test_bad_input_is_one_clear_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_slots_status_with_nothing_deployed(run):
    result = run("slots", "status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["SLOT", "VERSION", "WEIGHT"]
    assert "not deployed" in lines[1] and "not deployed" in lines[2]
    assert run("slots", "weights").output.strip() == "blue=0 green=0"
