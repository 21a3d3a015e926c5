"""Every role that may read clm's screens finds them in the Airflow navigation.

The React UI lists plugin nav entries from ``GET /api/v2/plugins``; under the FAB auth manager a Viewer is refused
there by default, so clm's entries vanished from a Viewer's navigation. ``clm init`` grants the read permission
(:func:`clm_lib.services.airflow_home.grant_plugin_view`); this runs the same grant on a real FAB database.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def core_api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


def _plugins(core_api, token: str):
    return core_api.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})


def test_read_roles_see_clm_in_the_navigation_after_the_grant(airflow_fab, core_api, tokens, tmp_path):
    from clm_lib.services.airflow_home import grant_plugin_view

    assert _plugins(core_api, tokens["vic"]).status_code == 403  # Airflow's default: only Admin reads plugins

    env = {**os.environ, **airflow_fab.env, "CLM_HOME": str(tmp_path)}
    assert grant_plugin_view(env, tmp_path / "init.log") == "Viewer, User, Op"
    # The FAB auth manager caches users with their permissions for [fab] cache_ttl (30 s); clm init runs before the
    # api-server starts, so only this test has to forget them.
    from airflow.api_fastapi.app import get_auth_manager

    get_auth_manager().cache.clear()

    for user in ("vic", "uma", "otto", "ada"):
        resp = _plugins(core_api, tokens[user])
        assert resp.status_code == 200, (user, resp.text[:200])
        names = {p["name"] for p in resp.json()["plugins"]}
        assert "clm" in names, (user, names)
    # Public has no role permissions at all and must stay refused.
    assert _plugins(core_api, tokens["pat"]).status_code == 403
    # A second grant (clm init is re-runnable) changes nothing.
    grant_plugin_view(env, tmp_path / "init.log")
    assert _plugins(core_api, tokens["vic"]).status_code == 200
