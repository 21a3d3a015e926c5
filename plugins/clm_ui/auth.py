"""Who may see and change clm's screens, decided by Airflow's configured auth manager.

FAB's ``@has_access`` does not work for plugin views under ``/pluginsv2`` in Airflow 3.3: under the FAB
auth manager it loops back to Home after login, under the simple one it answers 500 (measured, see
STACK.md). What works under every auth manager is what Airflow's own API does: take the JWT the UI holds
(``Authorization: Bearer`` header first, else the ``_token`` cookie), turn it into a user with
``get_user_from_token``, and ask the auth manager's ``is_authorized_*``.

Every clm view is wrapped in :func:`requires`. Anonymous visitors (or an expired/invalid cookie) are
redirected to the auth manager's login page and come back afterwards; an API client whose Bearer token is
invalid gets 401; an authenticated user without the permission gets a 403 page that says what is missing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity, DagDetails
from flask import Response, g, redirect, render_template, request
from jwt import InvalidTokenError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True)
class Permission:
    """A check on a user, and the words the 403 page uses to say what is missing."""

    description: str
    check: Callable[[BaseUser], bool]

    def allows(self, user: BaseUser) -> bool:
        return bool(self.check(user))


def _can_read(user: BaseUser) -> bool:
    # Read-only pages show pipeline state (runs, models, data counts, audit): the same audience as the DAG
    # list. FAB: "can read on Website" and "can read on DAGs" (Viewer and above); simple: VIEWER and above.
    am = get_auth_manager()
    return am.is_authorized_view(access_view=AccessView.WEBSITE, user=user) and am.is_authorized_dag(
        method="GET", user=user
    )


READ = Permission("read access to DAGs (the Viewer role or above)", _can_read)


def operate(dag_id: str) -> Permission:
    """May trigger runs of ``dag_id``: what every mutating clm action (promote, rollback, ...) does."""

    def check(user: BaseUser) -> bool:
        # FAB: "can create on DAG Runs" and "can edit on DAG:<id>" (User role and above); simple: USER.
        return get_auth_manager().is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )

    return Permission(f"permission to trigger runs of the DAG '{dag_id}' (the User role or above)", check)


def request_token() -> tuple[str | None, bool]:
    """The JWT presented with this request and whether it came as a Bearer header (an API client)."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), True
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN) or None, False


def current_user() -> BaseUser | None:
    """The user behind this request's token, or None when there is none or it is invalid/expired/revoked."""
    if "clm_user" in g:
        return g.clm_user
    token, _ = request_token()
    user = None
    if token:
        try:
            user = _run(get_auth_manager().get_user_from_token(token))
        except InvalidTokenError as exc:  # includes ExpiredSignatureError
            log.info("clm plugin: rejected token: %s", exc)
    g.clm_user = user
    return user


def user_may(permission: Permission) -> bool:
    """For templates: show an action only to users allowed to take it (the action re-checks anyway)."""
    user = current_user()
    return user is not None and permission.allows(user)


def login_url() -> str:
    """The auth manager's login page, returning to this page afterwards."""
    return get_auth_manager().get_url_login(next_url=request.url)


def requires(permission: Permission = READ) -> Callable[[F], F]:
    """Wrap a view: redirect anonymous visitors to login, 401 a bad Bearer token, 403 the unauthorised."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                _, bearer = request_token()
                if bearer:
                    return Response(
                        "invalid or expired token\n", 401, {"WWW-Authenticate": "Bearer", "Content-Type": "text/plain"}
                    )
                return redirect(login_url(), code=302)
            if not permission.allows(user):
                log.warning("clm plugin: %s denied %s on %s", user.get_name(), permission.description, request.path)
                return render_template(
                    "clm/forbidden.html", user_name=user.get_name(), needed=permission.description
                ), 403
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # Flask runs in a worker thread of Starlette's WSGIMiddleware, which has no event loop, so asyncio.run
    # is safe there. A caller that already runs a loop (a test, an async server) gets a fresh thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
