"""resolve_config: the file, then ``CLM_*`` variables, then the ``clm_default`` connection's extra; a connection
that exists but cannot be used is an error that names it, never a silent fall-back to the file's stores.

Connections come from ``AIRFLOW_CONN_*`` variables here, read through the Task SDK as a task, the triggerer and
the api-server read them; tests/plugins/test_clm_default_connection.py reads one from Airflow's database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clm_lib.airflow.settings import connection_overrides, resolve_config
from clm_lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
CONN = "AIRFLOW_CONN_CLM_DEFAULT"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The shipped config under tmp_path, its database named by the environment."""
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_DATABASE_URL", "sqlite:///from-env.db")
    for key in (CONN, "AIRFLOW_CONN_CLM_PROD", "MLFLOW_TRACKING_URI", "CLM_DATA_URI", "CLM__DATABASE__URL"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _json_conn(**extra) -> str:
    return json.dumps({"conn_type": "clm", "extra": extra})


def test_without_a_connection_the_file_and_environment_decide(env, tmp_path):
    cfg = resolve_config()

    assert cfg.database_url == "sqlite:///from-env.db"
    assert cfg.home == tmp_path / "home"


def test_the_connection_overrides_every_store_it_names(env, tmp_path):
    env.setenv(CONN, _json_conn(database_url="postgresql://clm:s3cret@db/clm", tracking_uri="http://mlflow:5000",
                                data_uri="s3://lake/clm"))  # fmt: skip

    cfg = resolve_config()

    assert cfg.database_url == "postgresql://clm:s3cret@db/clm"
    assert cfg.tracking_uri == "http://mlflow:5000"
    assert str(cfg.paths.lake) == "s3://lake/clm"
    assert cfg.home == tmp_path / "home"  # what the connection does not name still comes from the environment


def test_the_connection_wins_over_the_generic_environment_override(env):
    env.setenv("CLM__DATABASE__URL", "sqlite:///generic.db")
    assert resolve_config().database_url == "sqlite:///generic.db"

    env.setenv(CONN, _json_conn(database_url="sqlite:///from-connection.db"))
    assert resolve_config().database_url == "sqlite:///from-connection.db"


def test_a_uri_connection_and_an_empty_key_work(env):
    env.setenv(CONN, "clm://?database_url=postgresql%3A%2F%2Fclm%40db%2Fclm&tracking_uri=")

    assert connection_overrides() == {"CLM_DATABASE_URL": "postgresql://clm@db/clm"}
    assert resolve_config().tracking_uri != ""


def test_a_connection_without_extra_changes_nothing(env):
    env.setenv(CONN, json.dumps({"conn_type": "clm", "host": "ignored"}))

    assert connection_overrides() == {}
    assert resolve_config().database_url == "sqlite:///from-env.db"


def test_the_named_connection_is_read_and_an_edit_is_seen_on_the_next_call(env):
    env.setenv(CONN, _json_conn(database_url="sqlite:///default.db"))
    env.setenv("AIRFLOW_CONN_CLM_PROD", _json_conn(database_url="sqlite:///prod-1.db"))
    assert resolve_config("clm_prod").database_url == "sqlite:///prod-1.db"

    env.setenv("AIRFLOW_CONN_CLM_PROD", _json_conn(database_url="sqlite:///prod-2.db"))
    assert resolve_config("clm_prod").database_url == "sqlite:///prod-2.db"
    assert resolve_config().database_url == "sqlite:///default.db"


def test_an_explicit_config_path_wins_over_clm_config(env, tmp_path):
    path = tmp_path / "other.yaml"
    shipped = (REPO / "include" / "clm.yaml").read_text()
    path.write_text(shipped.replace("model_name: clm-assistant", "model_name: other-model"))
    env.setenv(CONN, _json_conn(database_url="sqlite:///from-connection.db"))

    cfg = resolve_config(config_path=str(path))

    assert cfg.registry.model_name == "other-model" and cfg.database_url == "sqlite:///from-connection.db"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"conn_type": "clm", "extra": ', r"connection 'clm_default' in \$AIRFLOW_CONN_CLM_DEFAULT cannot be parsed"),
        (json.dumps({"conn_type": "clm", "extra": "{database_url: x"}), "'clm_default': extra is not valid JSON"),
        (json.dumps({"conn_type": "clm", "extra": "[1]"}), "extra must be a JSON object, got list"),
        (_json_conn(databse_url="sqlite://"), "unknown extra key.s. databse_url; known: database_url, tracking_uri"),
        (_json_conn(database_url=5), "extra.database_url must be a string, got int"),
    ],
)
def test_a_connection_that_cannot_be_used_is_an_error_naming_it(env, value, message):
    env.setenv(CONN, value)

    with pytest.raises(ConfigError, match=message):
        resolve_config()


def test_an_invalid_file_is_still_reported_as_the_file(env, tmp_path):
    bad = tmp_path / "clm.yaml"
    bad.write_text("training: {max_steps: -1}\n")
    env.setenv(CONN, _json_conn(database_url="sqlite:///x.db"))

    with pytest.raises(ConfigError, match="max_steps"):
        resolve_config(config_path=str(bad))


def test_importing_the_hook_does_not_load_clms_config():
    # DAG files import the hook and operators; the config drags in numpy and pyarrow, which every parse would pay.
    code = (
        "import sys, clm_lib.airflow.hooks.clm, clm_lib.airflow.operators.base, clm_lib.airflow.sensors.retrain\n"
        "print('clm_lib.config' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
