"""Signing in to the stack's Airflow UI in Chromium, as the e2e browser tests do (fixtures in conftest.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOGIN_LIMIT_S = 41
"""Airflow's FAB login form answers 429 past ``[fab] auth_rate_limit`` (5 per 40 s per address by default; the
stack keeps it): a person retrying waits it out, and so does :func:`sign_in`."""
_SIGNED_IN: dict[tuple[str, str], dict] = {}
"""Each user's cookies after their first login, per stack: the e2e files sign in a dozen times otherwise, which is
what the limit is there to stop."""


def sign_in(page, user: str, password: str) -> None:
    """Fill and send the login form ``page`` shows; once more after the limit's window if it answered 429."""
    for _ in range(2):
        page.fill("#username", user)
        page.fill("#password", password)
        with page.expect_response(lambda r: r.request.method == "POST" and "/auth/login" in r.url) as sent:
            page.click("[type=submit]")
        if sent.value.status != 429:
            return
        page.wait_for_timeout(LOGIN_LIMIT_S * 1000)
        page.go_back()
    raise AssertionError(f"login of {user} refused twice with 429")


def login(browser, base: str, user: str, password: str, path: str):
    """A page at ``base + path`` signed in as ``user``: through the login form the first time, then with the
    cookies that login left (a new browser context each time, so pages do not share state otherwise)."""
    key = (base, user)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, storage_state=_SIGNED_IN.get(key))
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(base + path)
    if urlsplit(page.url).path.startswith("/auth/login"):
        sign_in(page, user, password)
        page.wait_for_url(base + path)
        _SIGNED_IN[key] = context.storage_state()
    return page
