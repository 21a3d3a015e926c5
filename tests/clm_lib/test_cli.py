from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from clm_lib.cli import cli
from clm_lib.services import processes
from clm_lib.services.processes import Component

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    # monkeypatch restores both even though `clm --home/--config` rewrite them in os.environ.
    monkeypatch.setenv("CLM_HOME", str(home))
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    for var in ("MLFLOW_TRACKING_URI", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "CLM_DATABASE_URL", "CLM_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    return home


def _run(*args: str):
    # Passing the variables makes the runner restore them afterwards: `--home`/`--config` set them in
    # os.environ, which in a real shell lasts only as long as the one `clm` process.
    env = {k: os.environ.get(k) for k in ("CLM_HOME", "CLM_CONFIG", "CLM_PROFILE")}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_clm_errors_are_one_line_and_exit_2(home, tmp_path):
    result = _run("--config", str(tmp_path / "missing.yaml"), "status")
    assert result.exit_code == 2
    assert result.stderr.startswith("clm: error: cannot read clm config")
    assert "Traceback" not in result.output


def test_up_before_init_says_what_to_do(home):
    result = _run("up")
    assert result.exit_code == 2
    assert "is not initialised: run `clm init` first" in result.stderr


def test_down_and_status_when_nothing_runs(home):
    down = _run("down")
    assert (down.exit_code, down.output.strip()) == (0, "clm is not running")
    status = _run("status")
    assert status.exit_code == 1
    assert status.output.count("not running") == 5
    rows = json.loads(_run("status", "--json").stdout)
    assert [r["component"] for r in rows] == ["mlflow", "api-server", "scheduler", "dag-processor", "triggerer"]
    assert not any(r["alive"] or r["healthy"] for r in rows)


def test_home_option_and_env_for_other_commands(home, tmp_path):
    other = tmp_path / "other-home"
    env = json.loads(_run("--home", str(other), "env", "--json").stdout)
    assert env["CLM_HOME"] == str(other)
    assert env["AIRFLOW_HOME"] == str(other / "airflow")
    assert env["CLM_CONFIG"] == str(REPO / "include" / "clm.yaml")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert (env["CLM__SERVER__AIRFLOW_PORT"], env["CLM__SERVER__MLFLOW_PORT"]) == ("8080", "5000")
    shell = _run("env").stdout
    assert f"export AIRFLOW_HOME={other / 'airflow'}\n" not in shell  # --home was not given this time
    assert f"export AIRFLOW_HOME={home / 'airflow'}\n" in shell


@pytest.fixture
def fake_stack(home, tmp_path, monkeypatch):
    """`clm up` on a stand-in stack: a real HTTP server answering /health on the MLflow port, plus `extra`."""
    (home / "airflow").mkdir(parents=True)
    (home / "airflow" / "airflow.cfg").write_text("[core]\n")  # as if `clm init` had run
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    (docroot / "health").write_text("OK")
    port = _free_port()
    server = Component(
        "mlflow",
        (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(docroot)),
        r"http\.server",
        f"http://127.0.0.1:{port}",
    )
    extra: list[Component] = []
    monkeypatch.setattr(processes.Stack, "components", lambda self: [server, *extra])
    return port, extra


def test_up_status_down_round_trip(fake_stack):
    port, _ = fake_stack
    up = _run("up", "--mlflow-port", str(port))
    assert up.exit_code == 0, up.output
    assert "mlflow         ready in" in up.stdout and "clm is up" in up.stdout
    status = _run("status")
    assert status.exit_code == 0 and "healthy" in status.stdout
    pid = json.loads(_run("status", "--json").stdout)[0]["pid"]
    assert psutil.pid_exists(pid)

    again = _run("up", "--mlflow-port", str(port))
    assert again.exit_code == 0 and "already running" in again.stdout
    moved = _run("up", "--mlflow-port", str(port + 1))
    assert moved.exit_code == 2 and "`clm down` first to change them" in moved.stderr
    switched = _run("up", "--profile", "production")  # nothing re-initialised under a running stack
    assert switched.exit_code == 2 and "with profile local: `clm down` first to switch to production" in (
        switched.stderr
    )
    assert not (Path(os.environ["CLM_HOME"]) / "profile").exists()

    down = _run("down")
    assert down.exit_code == 0 and "mlflow         stopped" in down.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _run("down").stdout.strip() == "clm is not running"


def test_a_component_dying_during_start_shows_its_log_and_stops_the_rest(fake_stack, tmp_path):
    port, extra = fake_stack
    script = tmp_path / "clm_fake_dying.py"
    script.write_text("import sys\nprint('boom: no database', flush=True)\nimport time; time.sleep(0.5); sys.exit(3)\n")
    extra.append(Component("api-server", (sys.executable, str(script)), r"clm_fake_dying"))
    result = _run("up", "--mlflow-port", str(port))
    assert result.exit_code == 2
    assert "boom: no database" in result.stderr
    assert "clm: error: api-server exited with code 3 while starting" in result.stderr
    assert json.loads(_run("status", "--json").stdout)[0]["alive"] is False  # the healthy one was stopped too


@pytest.mark.slow
@pytest.mark.postgres
def test_init_on_postgresql_is_idempotent(home, postgres_url):
    from sqlalchemy import create_engine, text

    first = _run("init", "--airflow-db-url", postgres_url, "--airflow-port", "18555")
    assert first.exit_code == 0, first.output
    assert "admin created" in first.stdout and "http://127.0.0.1:18555" in first.stdout
    second = _run("init")  # the DB URL chosen the first time is remembered
    assert second.exit_code == 0, second.output
    assert "admin kept" in second.stdout
    assert "operator created, viewer created" in first.stdout and "operator kept, viewer kept" in second.stdout
    assert (home / "operator-credentials").stat().st_mode & 0o777 == 0o600
    assert second.stdout.split("login: admin / ")[1].split()[0] == first.stdout.split("login: admin / ")[1].split()[0]
    assert f"sql_alchemy_conn = {postgres_url}\n" in (home / "airflow" / "airflow.cfg").read_text()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ab_user WHERE username = 'admin'")).scalar() == 1
            roles = conn.execute(text("SELECT u.username, r.name FROM ab_user u JOIN ab_user_role ur "
                                      "ON ur.user_id = u.id JOIN ab_role r ON r.id = ur.role_id")).all()  # fmt: skip
            assert sorted(roles) == [("admin", "Admin"), ("operator", "Op"), ("viewer", "Viewer")]
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()
    assert not (home / "airflow" / "airflow.db").exists()


def test_an_unknown_profile_is_refused_before_the_home_remembers_it(home):
    result = _run("init", "--profile", "staging")
    assert result.exit_code == 2 and "unknown clm profile 'staging': one of production" in result.stderr
    assert not (home / "profile").exists()


def test_init_with_a_profile_whose_database_does_not_answer_says_which(home, tmp_path):
    closed = _free_port()
    profile = tmp_path / "mine.yaml"
    profile.write_text(f"database: {{url: 'postgresql+psycopg2://clm:pw@127.0.0.1:{closed}/clm'}}\n")
    result = _run("init", "--profile", str(profile))
    assert result.exit_code == 2, result.output
    assert f"cannot create or check database 'clm' on postgresql+psycopg2://clm:***@127.0.0.1:{closed}/clm" in (
        result.stderr
    )
    assert "pw@" not in result.output
    # The home keeps the choice: `clm init` again, once the database answers, goes on with the same profile.
    assert (home / "profile").read_text().strip() == str(profile)


def test_up_under_celery_with_no_broker_says_so_before_starting_anything(home, monkeypatch):
    closed = _free_port()
    (home / "airflow").mkdir(parents=True)
    (home / "airflow" / "airflow.cfg").write_text("[core]\n")  # as if `clm init` had run
    monkeypatch.setenv("CLM__SERVER__EXECUTOR", "celery")
    monkeypatch.setenv("CLM__SERVER__AIRFLOW_DATABASE_URL", "postgresql+psycopg2://airflow@127.0.0.1:5432/airflow")
    monkeypatch.setenv("CLM__SERVER__CELERY__BROKER_URL", f"redis://:hunter2@127.0.0.1:{closed}/0")
    result = _run("up", "--timeout", "5")
    assert result.exit_code == 2, result.output
    assert f"the Celery broker redis://:***@127.0.0.1:{closed}/0 does not answer" in result.stderr
    assert "hunter2" not in result.output and not list((home / "run").glob("*.pid"))


def test_clm_outside_a_checkout_says_so_in_one_line_and_creates_nothing(tmp_path):
    import subprocess

    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "user"), "LANG": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", "clm_lib.cli", "deployments"], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        'clm: error: no clm config found: run inside a clm checkout (its root folder), set CLM_CONFIG and CLM_HOME, '
        'or eval "$(clm env)" there first'
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_database_error_is_one_line(home, tmp_path):
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    result = CliRunner().invoke(cli, ["deployments"], env={"CLM_HOME": str(home), "CLM_DATABASE_URL": url})
    assert result.exit_code == 2
    assert result.stderr.startswith("clm: error: clm's database: no such table")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
