"""clm_ui.auth against Airflow's real auth managers: FAB (users and roles in a real metadata DB) and simple."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest

PAGE = "/clm/"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def _cookie(client, token: str) -> None:
    client.set_cookie("_token", token, domain="localhost")


def test_anonymous_visitor_is_sent_to_login_and_brought_back(client):
    response = client.get(PAGE)

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/auth/login/"
    assert parse_qs(location.query)["next"] == ["http://localhost/pluginsv2/clm/"]


@pytest.mark.parametrize("name", ["ada", "uma", "vic"])
def test_users_with_a_role_that_reads_dags_see_the_page(client, tokens, name):
    _cookie(client, tokens[name])

    response = client.get(PAGE)

    assert response.status_code == 200
    assert f"Signed in as <strong>{name}</strong>" in response.text


def test_bearer_header_works_for_api_clients(client, tokens):
    response = client.get(PAGE, headers={"Authorization": f"Bearer {tokens['vic']}"})

    assert response.status_code == 200


def test_bearer_header_wins_over_the_cookie(client, tokens):
    _cookie(client, tokens["ada"])

    response = client.get(PAGE, headers={"Authorization": f"Bearer {tokens['pat']}"})

    assert response.status_code == 403


def test_authenticated_user_without_permission_gets_a_clear_403(client, tokens):
    _cookie(client, tokens["pat"])

    response = client.get(PAGE)

    assert response.status_code == 403
    assert "You are signed in as <strong>pat</strong>" in response.text
    assert "read access to DAGs" in response.text
    assert "Traceback" not in response.text


def test_invalid_bearer_token_is_401_not_a_redirect(client):
    response = client.get(PAGE, headers={"Authorization": "Bearer not-a-jwt"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", ["garbage", "expired", "revoked", "wrong_secret"])
def test_a_cookie_that_is_no_longer_good_means_logging_in_again(client, fab_user, kind):
    import jwt
    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    user = fab_user("vic")
    token = {
        "garbage": lambda: "x.y.z",
        "expired": lambda: am.generate_jwt(user, expiration_time_in_seconds=-3600),
        "revoked": lambda: am.generate_jwt(user),
        "wrong_secret": lambda: jwt.encode(
            {"sub": str(user.id), "aud": "apache-airflow", "exp": time.time() + 600}, "w" * 64, algorithm="HS512"
        ),
    }[kind]()
    if kind == "revoked":
        am.revoke_token(token)
    _cookie(client, token)

    response = client.get(PAGE)

    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/auth/login/"


@pytest.mark.parametrize(("name", "may_read", "may_operate"), [
    ("ada", True, True), ("uma", True, True), ("vic", True, False), ("pat", False, False),
])  # fmt: skip
def test_permissions_follow_fab_roles(flask_app, tokens, name, may_read, may_operate):
    from clm_ui.auth import READ, current_user, operate, user_may

    with flask_app.test_request_context("/clm/", headers={"Authorization": f"Bearer {tokens[name]}"}):
        user = current_user()
        assert user.get_name() == name
        assert READ.allows(user) is may_read
        assert operate("clm_continual_training").allows(user) is may_operate
        assert user_may(operate("clm_continual_training")) is may_operate


def test_no_token_means_no_user_and_no_permission(flask_app):
    from clm_ui.auth import READ, current_user, user_may

    with flask_app.test_request_context("/clm/"):
        assert current_user() is None
        assert user_may(READ) is False


def test_the_same_decorator_works_under_the_simple_auth_manager(client, monkeypatch):
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
    monkeypatch.setattr(api_app._AuthManagerState, "instance", None)  # restored to the FAB one afterwards
    am = api_app.create_auth_manager()
    viewer = am.generate_jwt(SimpleAuthManagerUser(username="sam", role="viewer"))
    no_role = am.generate_jwt(SimpleAuthManagerUser(username="nia", role=None))

    anonymous = client.get(PAGE)
    assert anonymous.status_code == 302
    assert urlsplit(anonymous.headers["Location"]).path == "/auth/login"
    assert client.get(PAGE, headers={"Authorization": f"Bearer {viewer}"}).status_code == 200
    denied = client.get(PAGE, headers={"Authorization": f"Bearer {no_role}"})
    assert denied.status_code == 403 and "nia" in denied.text
