"""The overview, drift and serving screens in a real browser against the real stack (`clm up`, FAB auth manager).

Chromium is Debian's (/usr/bin/chromium); Playwright only drives it and never downloads a browser.
Screenshots go to ``$CLM_E2E_ARTIFACTS``, else ``build/screens/`` in the checkout (git-ignored): one per screen,
named after it; look at them.
The stack is shared with the other e2e tests, so this test reads whatever state it is in and changes
nothing but one extra user without roles.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.browsing import login, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OVERVIEW = "/pluginsv2/clm/"
DRIFT = "/pluginsv2/clm/drift"
SERVING = "/pluginsv2/clm/serving"


REPO = Path(__file__).resolve().parents[2]


def test_login_overview_and_nav_entry(airflow_stack, browser, artifacts):
    base = airflow_stack.base_url
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.set_default_timeout(60_000)

    # Anonymous: Airflow's login page, which will send us back to the overview.
    page.goto(base + OVERVIEW)
    landed = urlsplit(page.url)
    assert landed.path == "/auth/login/"
    assert parse_qs(landed.query)["next"] == [base + OVERVIEW]

    started = time.monotonic()
    sign_in(page, airflow_stack.username, airflow_stack.password)
    page.wait_for_url(base + OVERVIEW)
    page.locator("h1", has_text="Overview").wait_for()
    login_to_overview_s = time.monotonic() - started
    assert f"Signed in as {airflow_stack.username}" in page.locator(".who").inner_text()
    assert page.locator("section.cards .card").count() == 3
    assert page.get_by_role("heading", name="Versions", exact=True).is_visible()
    assert page.locator("h2", has_text="Forgetting matrix").is_visible()
    assert page.locator("h2", has_text="Audit log").is_visible()
    assert page.locator(".notice-error").count() == 0, page.locator(".notice-error").all_inner_texts()
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    # The Airflow UI's own navigation has the entry; it opens the page in an iframe.
    page.goto(base + "/")
    entry = page.locator("a[href='/plugin/clm-overview']")
    entry.wait_for()
    assert "Continual learning" in entry.inner_text()
    entry.click()
    frame = page.frame_locator("iframe[title='Continual learning']")
    frame.locator("h1", has_text="Overview").wait_for()
    assert urlsplit(page.url).path.startswith("/plugin/clm-overview")
    page.wait_for_timeout(500)  # let the iframe paint before the screenshot
    page.screenshot(path=str(artifacts / "overview-in-airflow.png"))
    print(f"\noverview e2e: login -> overview {login_to_overview_s:.2f} s; screenshots in {artifacts}")


def test_drift_page_tabs_and_nav_entry(airflow_stack, browser, artifacts):
    base = airflow_stack.base_url
    page = login(browser, base, airflow_stack.username, airflow_stack.password, DRIFT)

    # Whatever the shared stack holds (no check yet, or the cycle test's checks), the page reads it without error.
    page.locator("h1", has_text="Drift").wait_for()
    assert page.locator("h2", has_text="Detectors").is_visible()
    assert page.locator("h2", has_text="Alerts").is_visible()
    assert page.locator("[id^='detector-']").count() >= 1  # a chart row per detector, or the table before any check
    assert page.locator(".notice-error").count() == 0, page.locator(".notice-error").all_inner_texts()
    charts = page.locator("svg.chart").count()
    page.screenshot(path=str(artifacts / "drift.png"), full_page=True)

    # The tabs move between the two pages.
    page.locator("nav.tabs a", has_text="Overview").click()
    page.wait_for_url(base + OVERVIEW)
    page.locator("h1", has_text="Overview").wait_for()
    page.locator("nav.tabs a", has_text="Drift").click()
    page.wait_for_url(base + DRIFT)
    assert page.locator("nav.tabs a.active").inner_text() == "Drift"

    # Its Airflow nav entry (under Plugins -> "Continual learning") opens it in an iframe at /plugin/clm-drift.
    page.goto(base + "/plugin/clm-drift")
    frame = page.frame_locator("iframe[title='Drift']")
    frame.locator("h1", has_text="Drift").wait_for()
    assert urlsplit(page.url).path.startswith("/plugin/clm-drift")
    page.wait_for_timeout(500)  # let the iframe paint before the screenshot
    page.screenshot(path=str(artifacts / "drift-in-airflow.png"))
    print(f"\ndrift e2e: {charts} chart(s) drawn; screenshots in {artifacts}")


def test_serving_page_and_its_nav_entry(airflow_stack, browser, artifacts):
    base = airflow_stack.base_url
    page = login(browser, base, airflow_stack.username, airflow_stack.password, SERVING)

    # Whatever the shared stack serves (nothing yet, or the cycle test's promotions), the page reads it: slots or
    # why there are none, the last deployment, the history, and the rollback card. Nothing here is clicked to
    # roll back: the stack is shared.
    page.locator("h1", has_text="Serving").wait_for()
    assert page.locator("h2", has_text="Deployment history").is_visible()
    assert page.locator("[aria-label='rollback']").is_visible()
    assert "could not be built" not in page.content()
    page.screenshot(path=str(artifacts / "serving.png"), full_page=True)
    form = page.locator("details.rollback summary")
    if form.count():  # the admin may roll back and there is somewhere to go: show the form, do not send it
        form.click()
        page.locator("#rb-reason").wait_for()
        page.screenshot(path=str(artifacts / "serving-rollback-form.png"))

    page.goto(base + "/")
    entry = page.locator("a[href='/plugin/clm-serving']")
    entry.wait_for()
    entry.click()
    page.frame_locator("iframe[title='Serving']").locator("h1", has_text="Serving").wait_for()
    page.wait_for_timeout(500)  # let the iframe paint before the screenshot
    page.screenshot(path=str(artifacts / "serving-in-airflow.png"))


def test_a_user_without_roles_gets_403_with_an_explanation(airflow_stack):
    created = airflow_stack.airflow(
        "users", "create", "-u", "e2e-norole", "-p", "norole-pw", "-r", "Public",
        "-f", "No", "-l", "Role", "-e", "norole@example.com",
    )  # fmt: skip
    assert created.returncode == 0 or "already exist" in created.stdout + created.stderr, created.stderr[-2000:]
    body = json.dumps({"username": "e2e-norole", "password": "norole-pw"}).encode()
    req = urllib.request.Request(
        f"{airflow_stack.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        token = json.loads(resp.read())["access_token"]

    page = urllib.request.Request(airflow_stack.base_url + OVERVIEW, headers={"Cookie": f"_token={token}"})
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(page, timeout=60)

    assert denied.value.code == 403
    html = denied.value.read().decode()
    assert "e2e-norole" in html and "read access to DAGs" in html


def test_every_screen_renders_in_the_browser_with_a_screenshot(airflow_stack, browser, artifacts):
    """Every screen of the navigation list (clm_ui.SCREENS) as the admin: it answers 200, renders its heading and
    the tab bar that links to every other screen, and leaves a screenshot named after it."""
    import sys

    sys.path.insert(0, str(REPO / "plugins"))
    from clm_ui import ROUTE_BASE, SCREENS

    base = airflow_stack.base_url
    page = login(browser, base, airflow_stack.username, airflow_stack.password, f"/pluginsv2{ROUTE_BASE}/")
    shots = []
    for path, _name, url_route, *_ in SCREENS:
        response = page.goto(base + f"/pluginsv2{ROUTE_BASE}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        page.locator("h1").first.wait_for()
        for other in SCREENS:  # every screen is one click away from every other
            assert page.locator(f"a[href$='{ROUTE_BASE}{other[0]}']").count() >= 1, (path, other[0])
        shot = artifacts / f"{url_route}.png"
        page.screenshot(path=str(shot), full_page=True)
        shots.append(shot.name)
    print(f"\nscreens: {len(shots)} screenshots in {artifacts}: {', '.join(shots)}")
