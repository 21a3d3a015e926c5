"""A real Airflow metadata DB with the FAB auth manager and real users, and the FAB Flask app that serves
``/pluginsv2`` with clm's plugin loaded from ``plugins/``.

The DB (migrations, roles, users) is built once per session in a subprocess, so this process's Airflow
globals stay untouched until a test module asks for :func:`airflow_fab`; that module-scoped fixture points
Airflow at the DB through ``AIRFLOW__*`` variables and restores everything afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PASSWORD = "pw-for-tests"
# username -> FAB role. "Public" has no permissions at all in Airflow 3's FAB auth manager.
USERS = {"ada": "Admin", "otto": "Op", "uma": "User", "vic": "Viewer", "pat": "Public"}

_SETUP = f"""
from airflow.utils import db
db.upgradedb()  # a new DB is created from the ORM, FAB's tables included
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:  # creates the FAB roles and their permissions
    for name, role in {USERS!r}.items():
        ab.sm.add_user(name, name.title(), "Test", name + "@example.com", ab.sm.find_role(role), password={PASSWORD!r})
"""


@dataclass(frozen=True)
class AirflowFab:
    home: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def airflow_fab_db(tmp_path_factory) -> AirflowFab:
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__BASE_URL": "http://localhost",
        "AIRFLOW__API__SECRET_KEY": "clm-tests-secret-key-" + "k" * 48,
        "AIRFLOW__API_AUTH__JWT_SECRET": "clm-tests-jwt-secret-" + "s" * 48,  # HS512 wants >= 64 bytes
        "AIRFLOW__FAB__CONFIG_FILE": str(home / "webserver_config.py"),
    }
    done = subprocess.run(
        [sys.executable, "-c", _SETUP], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return AirflowFab(home, env)


def reset_airflow_state() -> None:
    """Forget what Airflow cached about its config: plugins, the auth manager, JWT signer and validator."""
    from airflow import plugins_manager, settings
    from airflow.api_fastapi.app import purge_cached_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    settings.configure_vars()
    settings.reconfigure_orm()
    for cached in (
        plugins_manager._get_plugins,
        plugins_manager._get_ui_plugins,
        plugins_manager.get_flask_plugins,
        plugins_manager.get_fastapi_plugins,
    ):
        cached.cache_clear()
    BaseAuthManager._get_token_signer.__func__.cache_clear()
    BaseAuthManager._get_token_validator.__func__.cache_clear()
    purge_cached_app()


@pytest.fixture(scope="module")
def airflow_fab(airflow_fab_db: AirflowFab, tmp_path_factory) -> Iterator[AirflowFab]:
    """This process configured for the test Airflow (FAB auth manager) and an empty clm home."""
    clm_home = tmp_path_factory.mktemp("clm-home")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**airflow_fab_db.env, "CLM_HOME": str(clm_home)}.items():
            mp.setenv(key, value)
        for key in ("CLM_DATABASE_URL", "MLFLOW_TRACKING_URI", "CLM_CONFIG"):
            mp.delenv(key, raising=False)
        reset_airflow_state()
        from airflow.api_fastapi.app import init_auth_manager

        init_auth_manager()
        yield airflow_fab_db
    reset_airflow_state()


@pytest.fixture(scope="module")
def flask_app(airflow_fab):
    """The FAB provider's plugin app, exactly as the api-server mounts it at /pluginsv2."""
    from airflow.providers.fab.www.app import create_app

    app = create_app(enable_plugins=True)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(flask_app):
    """A test client whose requests arrive under /pluginsv2, as Starlette's WSGIMiddleware mounts the app."""
    from flask.testing import FlaskClient

    class MountedClient(FlaskClient):
        def open(self, *args, **kwargs):
            kwargs.setdefault("base_url", "http://localhost/pluginsv2")
            return super().open(*args, **kwargs)

    flask_app.test_client_class = MountedClient
    return flask_app.test_client()


@pytest.fixture(scope="module")
def fab_user(airflow_fab):
    """Look up a test user in the FAB tables (detached: enough to issue a token for it)."""
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def find(name: str):
        with create_session() as session:
            user = session.scalars(select(User).where(User.username == name)).one()
            session.expunge(user)
            return user

    return find


@pytest.fixture(scope="module")
def tokens(fab_user) -> dict[str, str]:
    """A valid JWT per test user, issued by the FAB auth manager."""
    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    return {name: am.generate_jwt(fab_user(name)) for name in USERS}


@pytest.fixture
def fake_airflow(monkeypatch):
    """A loopback server standing in for Airflow's REST API, reached through ``CLM_AIRFLOW_URL``: the tests'
    Airflow DB holds no clm DAG, so what a trigger sends (``.seen``: path, the caller's token, body) is checked
    as it arrives; set ``.answer = (status, body)`` to make it refuse."""
    from tests.clm_lib.reporting.training_history import fake_airflow_server

    with fake_airflow_server() as (url, airflow):
        monkeypatch.setenv("CLM_AIRFLOW_URL", url)
        yield airflow
