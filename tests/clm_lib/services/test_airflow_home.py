from __future__ import annotations

import configparser
import importlib.util
import os
import stat
from pathlib import Path

import pytest
import yaml

from clm_lib.errors import ClmError
from clm_lib.services import airflow_home
from clm_lib.services.airflow_home import TEMPLATE, render_config, render_template

REPO = Path(__file__).resolve().parents[3]


def _read_cfg(path: Path) -> configparser.ConfigParser:
    # Airflow's parser interpolates like ConfigParser's default, so this reads values as Airflow will.
    parser = configparser.ConfigParser()
    parser.read(path)
    return parser


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_template_uses_only_options_airflow_3_3_knows():
    from airflow.providers.celery.get_provider_info import get_provider_info

    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations
    known = yaml.safe_load((Path(spec.submodule_search_locations[0]) / "config_templates" / "config.yml").read_text())
    known |= get_provider_info()["config"]  # [celery] is the Celery provider's
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(TEMPLATE.read_text())
    unknown = [
        f"[{section}] {key}"
        for section in parser.sections()
        for key in parser[section]
        if key not in known.get(section, {}).get("options", {})
    ]
    assert parser.sections() and unknown == []


def test_render_config_points_airflow_at_the_repo_and_loopback(runtime_cfg):
    path = render_config(runtime_cfg, airflow_port=18123)
    assert path == runtime_cfg.home / "airflow" / "airflow.cfg"
    cfg = _read_cfg(path)
    assert cfg["core"]["dags_folder"] == str(REPO / "dags")
    assert cfg["core"]["plugins_folder"] == str(REPO / "plugins")
    assert cfg["core"]["auth_manager"] == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    assert cfg["core"]["executor"] == "LocalExecutor"
    assert cfg["core"]["parallelism"] == str(runtime_cfg.server.parallelism)
    assert cfg["core"]["load_examples"] == "False"
    assert cfg["core"]["dags_are_paused_at_creation"] == "False"
    assert cfg["core"]["execution_api_server_url"] == "http://127.0.0.1:18123/execution/"
    assert (cfg["api"]["host"], cfg["api"]["port"]) == ("127.0.0.1", "18123")
    assert cfg["scheduler"]["enable_health_check"] == "False"
    assert cfg["database"]["sql_alchemy_conn"] == f"sqlite:///{runtime_cfg.home / 'airflow' / 'airflow.db'}"
    assert cfg["logging"]["base_log_folder"] == str(runtime_cfg.logs_dir / "airflow")


def test_secrets_are_generated_once_kept_and_private(runtime_cfg):
    first = _read_cfg(render_config(runtime_cfg))
    second = _read_cfg(render_config(runtime_cfg, airflow_port=19000))
    for section, key in (("api", "secret_key"), ("api_auth", "jwt_secret"), ("core", "fernet_key")):
        assert len(first[section][key]) >= 32
        assert first[section][key] == second[section][key]
    assert first["api"]["secret_key"] != first["api_auth"]["jwt_secret"]
    home = runtime_cfg.home / "airflow"
    assert _mode(home / "airflow.cfg") == 0o600
    assert _mode(home / "secrets.json") == 0o600


def test_db_url_precedence_option_then_env_then_remembered(runtime_cfg, monkeypatch):
    pg = "postgresql+psycopg2://airflow:p%40ss@127.0.0.1:5432/airflow"
    conn = _read_cfg(render_config(runtime_cfg, sql_alchemy_conn=pg))["database"]["sql_alchemy_conn"]
    assert conn == pg  # the % of the URL-encoded password survives the config parser's interpolation
    assert _read_cfg(render_config(runtime_cfg))["database"]["sql_alchemy_conn"] == pg
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/other.db")
    assert _read_cfg(render_config(runtime_cfg))["database"]["sql_alchemy_conn"] == "sqlite:////tmp/other.db"


def test_the_executor_and_its_broker_come_from_the_server_section(runtime_cfg):
    parsed = _read_cfg(render_config(runtime_cfg))
    assert parsed["core"]["executor"] == "LocalExecutor"
    pg = "postgresql+psycopg2://airflow:pw@127.0.0.1:5432/airflow"
    runtime_cfg.server.executor = "celery"
    runtime_cfg.server.airflow_database_url = pg
    runtime_cfg.server.celery.broker_url = "redis://:s3cret@127.0.0.1:6379/3"
    runtime_cfg.server.celery.queue = "clm-a"
    parsed = _read_cfg(render_config(runtime_cfg))
    assert parsed["core"]["executor"] == "CeleryExecutor" and parsed["database"]["sql_alchemy_conn"] == pg
    assert parsed["celery"]["broker_url"] == "redis://:s3cret@127.0.0.1:6379/3"  # a private file, mode 0600
    assert (parsed["operators"]["default_queue"], parsed["celery"]["worker_concurrency"]) == ("clm-a", "2")
    assert "result_backend" not in parsed["celery"]  # Airflow's default: db+ its metadata database


def test_the_celery_executor_on_sqlite_is_refused_before_anything_is_written(runtime_cfg):
    runtime_cfg.server.executor = "celery"
    with pytest.raises(ClmError, match=r"server.executor is celery.*PostgreSQL.*server.airflow_database_url"):
        render_config(runtime_cfg)
    assert not airflow_home.config_path(runtime_cfg).exists()


def test_render_template_fills_escapes_and_refuses_what_it_cannot_render():
    assert render_template("a = ${x}\n", {"x": "50%"}) == "a = 50%%\n"
    with pytest.raises(ClmError, match=r"unknown placeholder.*nope"):
        render_template("a = ${nope}\n", {})
    with pytest.raises(ClmError, match="x must be a single line"):
        render_template("a = ${x}\n", {"x": "1\n[core]"})


def test_unreadable_secrets_file_is_a_clear_error(runtime_cfg):
    home = runtime_cfg.home / "airflow"
    home.mkdir(parents=True)
    (home / "secrets.json").write_text("{not json")
    with pytest.raises(ClmError, match=r"secrets\.json.*delete it"):
        render_config(runtime_cfg)


def test_airflow_env_carries_home_config_and_offline_flags(runtime_cfg, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"/elsewhere{os.pathsep}{REPO}")
    monkeypatch.setenv("CLM__TRAINING__MAX_STEPS", "7")
    env = airflow_home.airflow_env(runtime_cfg, mlflow_tracking_uri="http://127.0.0.1:5999")
    assert env["AIRFLOW_HOME"] == str(runtime_cfg.home / "airflow")
    assert env["AIRFLOW_CONFIG"] == str(runtime_cfg.home / "airflow" / "airflow.cfg")
    assert env["CLM_HOME"] == str(runtime_cfg.home)
    assert env["CLM_CONFIG"] == str(REPO / "include" / "clm.yaml")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert (env["DS_ACCELERATOR"], env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"]) == ("cpu", "1", "1")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert env["CLM__TRAINING__MAX_STEPS"] == "7"  # overrides reach the tasks


def test_malformed_credentials_file_is_a_clear_error(runtime_cfg):
    runtime_cfg.home.mkdir(parents=True)
    airflow_home.credentials_path(runtime_cfg).write_text("admin\n")
    with pytest.raises(ClmError, match="admin-credentials must hold username"):
        airflow_home.read_credentials(runtime_cfg)


def test_failed_airflow_command_shows_its_output(runtime_cfg, tmp_path):
    render_config(runtime_cfg)
    env = airflow_home.airflow_env(runtime_cfg)
    log = tmp_path / "init.log"
    with pytest.raises(ClmError, match=r"(?s)airflow no-such-command failed \(exit 2\).*invalid choice"):
        airflow_home.run_airflow(["no-such-command"], env, log)
    assert "invalid choice" in log.read_text()


@pytest.mark.slow
def test_admin_user_is_created_once_and_recovered_when_its_file_is_lost(runtime_cfg, tmp_path):
    import sqlite3

    from werkzeug.security import check_password_hash

    render_config(runtime_cfg)
    env = airflow_home.airflow_env(runtime_cfg)
    log = tmp_path / "init.log"
    airflow_home.migrate_airflow_db(runtime_cfg, env, log)

    first = airflow_home.ensure_admin_user(runtime_cfg, env, log)
    assert first.created and first.username == "admin" and len(first.password) >= 20
    assert _mode(airflow_home.credentials_path(runtime_cfg)) == 0o600
    again = airflow_home.ensure_admin_user(runtime_cfg, env, log)
    assert (again.created, again.password) == (False, first.password)

    airflow_home.credentials_path(runtime_cfg).unlink()
    recovered = airflow_home.ensure_admin_user(runtime_cfg, env, log)
    assert not recovered.created and recovered.password != first.password
    assert airflow_home.read_credentials(runtime_cfg) == ("admin", recovered.password)
    with sqlite3.connect(runtime_cfg.home / "airflow" / "airflow.db") as db:
        (stored,) = db.execute("SELECT password FROM ab_user WHERE username = 'admin'").fetchone()
    assert check_password_hash(stored, recovered.password)
    assert not check_password_hash(stored, first.password)
    assert first.password not in log.read_text()  # passwords go through stdin, not the logged command line
