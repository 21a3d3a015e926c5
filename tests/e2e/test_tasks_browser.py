"""The Multi-task screen in a real browser against the real stack: as an operator, adding a task after its impact
preview (a configuration revision, audited ``config.changed``), and the removal impact of a task and its confirmation
(a ``clm_continual_training`` run with ``remove_task`` in the operator's name, audited); as a viewer, no controls and
a forged POST refused with nothing changed. Chromium is Debian's (/usr/bin/chromium).

The stack's config trains one shared adapter, so the module makes a champion with per-task adapters without training:
a registered version whose training run points at a per-task adapter folder (two fake adapters and a real router),
promoted with the ``alias`` strategy (no serving slot is touched). At the end the champion from before is restored
with ``clm rollback --to`` and ``data.tasks`` reverted. ``clm_continual_training`` is paused while the operator
confirms, so the run stays queued; it is deleted afterwards. Screenshots go to ``build/screens/``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.e2e.browsing import login as sign_in_at

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TASKS = "/pluginsv2/clm/tasks"
DAG = "clm_continual_training"
RUN = uuid.uuid4().hex[:8]


def call(base: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {"raw": exc.read()[:500].decode(errors="replace")}


@pytest.fixture(scope="module")
def per_task_champion(airflow_stack, tmp_path_factory):
    """A champion with per-task adapters for routers and billing; the champion and data.tasks of before restored
    afterwards. Yields ``(admin token, version)``."""
    from clm_lib.config import load_config
    from clm_lib.config_store import live_revision, revert
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.deploy.rollback import rollback
    from clm_lib.deploy.rollout import rollout
    from clm_lib.registry.mlflow_registry import alias_version, client
    from clm_lib.services.airflow_client import AirflowClient
    from tests.clm_lib.reporting.tasks_history import fitted_router, per_task_dir

    AirflowClient(airflow_stack.base_url, airflow_stack.username, airflow_stack.password).wait_for_dag(DAG, 240)
    env = airflow_stack.env | {"CLM__DEPLOY__STRATEGY": "alias"}
    file_cfg, cfg = load_config(environ=airflow_stack.env), load_config(environ=env)
    before = alias_version(cfg, "champion")
    with session_scope(file_cfg.database_url) as s:
        base = live_revision(s, file_cfg).number
    c, name = client(cfg), cfg.registry.model_name
    if not c.search_registered_models(filter_string=f"name='{name}'"):
        c.create_registered_model(name)
    # No artifact: nothing loads this version. An MLflow server refuses a local path as a source.
    version = str(c.create_model_version(name, source="s3://clm-e2e/no-artifact").version)
    folder = per_task_dir(tmp_path_factory.mktemp("tasks-e2e") / "run", {"routers": 8, "billing": 4}, fitted_router())
    run_id = f"e2e-tasks-{version}-{RUN}"
    scores = {"routers": 100.0, "billing": 100.0}  # passes any gate against the cycle's champion
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id=run_id, status="succeeded", base_model="b", config_hash="h", model_version=version,
                          tasks=list(scores), output_dir=str(folder.parent)))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id=run_id, model_version=version, tasks=list(scores), scores=scores,
                         matrix=[list(scores.values())], average_accuracy=100.0))  # fmt: skip
    assert rollout(cfg, version, actor="e2e", reason=f"e2e {RUN}: per-task champion").status == "promoted"
    try:
        yield airflow_stack.token(), version
    finally:
        with session_scope(file_cfg.database_url) as s:
            live = live_revision(s, file_cfg).number
            if live != base:
                revert(s, file_cfg=file_cfg, to=base, base_revision=live, actor="e2e", reason=f"e2e {RUN} done")
        if before is not None and alias_version(cfg, "champion") != before:
            # In this process with the alias strategy, as the per-task champion was made (`clm rollback` would
            # follow the live configuration revision's strategy instead).
            assert rollback(cfg, before, actor="e2e", reason=f"e2e {RUN}: restore the champion").to_version == before


def login(browser, base: str, user, path: str):
    return sign_in_at(browser, base, user.username, user.password, path)


def _state(base: str, admin: str, actor: str) -> tuple:
    runs = call(base, "GET", f"/api/v2/dags/{DAG}/dagRuns?limit=1", admin)[1]["total_entries"]
    audit = call(base, "GET", f"/clm/api/v1/audit?actor={actor}&limit=5", admin)[1]["total"]
    return runs, audit, call(base, "GET", "/clm/api/v1/tasks", admin)[1]["configured"]


def test_viewer_sees_no_controls_forging_changes_nothing(airflow_stack, stack_users, per_task_champion,
                                                          browser, artifacts):  # fmt: skip
    base, (admin, version) = airflow_stack.base_url, per_task_champion
    viewer, op = stack_users["viewer"], stack_users["operator"]
    token = login(browser, base, op, f"{TASKS}/billing").locator("#remove-form input[name=clm_csrf]")
    token = token.get_attribute("value")
    before = _state(base, admin, viewer.username)
    assert "billing" in before[2]

    page = login(browser, base, viewer, TASKS)
    assert page.locator("#tasks").is_visible() and f"v{version}" in page.locator(".page-head").inner_text()
    assert page.locator("a.remove-link").count() == 0 and page.locator("#new-task").count() == 0
    page.screenshot(path=str(artifacts / "tasks-viewer.png"), full_page=True)
    page.goto(f"{base}{TASKS}/billing")
    page.locator("#routed").wait_for()
    assert page.locator("#remove-form").count() == 0 and page.locator("input[name=clm_csrf]").count() == 0
    page.screenshot(path=str(artifacts / "tasks-viewer-impact.png"), full_page=True)
    origin = {"Origin": base}
    for path, form in {
        f"{TASKS}/billing/remove": {"clm_csrf": token, "reason": "forged"},
        f"{TASKS}/add/confirm": {"clm_csrf": token, "name": "solar", "reason": "forged"},
    }.items():
        answer = page.request.post(base + path, form=form, headers=origin, max_redirects=0)
        assert answer.status == 403, (path, answer.status)
    for path, body in {"/clm/api/v1/tasks/billing/remove": {"reason": "forged"},
                       "/clm/api/v1/tasks": {"name": "solar", "reason": "forged"}}.items():  # fmt: skip
        assert page.request.post(base + path, data=body, headers=origin).status == 403, path

    assert _state(base, admin, viewer.username) == before


def test_operator_adds_a_task_after_seeing_the_impact(airflow_stack, stack_users, per_task_champion,
                                                      browser, artifacts):  # fmt: skip
    base, (admin, _version) = airflow_stack.base_url, per_task_champion
    op, name = stack_users["operator"], f"solar_{RUN}"
    assert name not in call(base, "GET", "/clm/api/v1/tasks", admin)[1]["configured"]
    page = login(browser, base, op, TASKS)
    page.fill("#new-task", name)
    page.locator("#add-task form button[type=submit]").click()
    page.locator("#add-impact").wait_for()
    assert name in page.locator("h1").inner_text()
    reason = f"e2e {RUN}: solar inverters join the product line"
    page.fill("#add-reason", reason)
    page.screenshot(path=str(artifacts / "tasks-add-impact.png"), full_page=True)
    page.locator("#add-form button[type=submit]").click()
    page.locator("#add-result, #task-problem").first.wait_for()
    assert page.locator("#add-result").count() == 1, page.locator("#task-problem").inner_text()
    assert name in page.locator("#add-result").inner_text()
    page.screenshot(path=str(artifacts / "tasks-added.png"), full_page=True)

    assert name in call(base, "GET", "/clm/api/v1/tasks", admin)[1]["configured"]
    audit = call(base, "GET", f"/clm/api/v1/audit?action=config.changed&actor={op.username}&limit=5", admin)
    latest = audit[1]["items"][0]
    assert (latest["actor"], latest["reason"]) == (f"airflow:{op.username}", reason)


def test_operator_removes_a_task_after_seeing_the_impact(airflow_stack, stack_users, per_task_champion,
                                                         browser, artifacts):  # fmt: skip
    base, (admin, _version) = airflow_stack.base_url, per_task_champion
    op = stack_users["operator"]
    was_paused = call(base, "GET", f"/api/v2/dags/{DAG}", admin)[1]["is_paused"]
    run_id = None
    try:
        assert call(base, "PATCH", f"/api/v2/dags/{DAG}", admin, {"is_paused": True})[0] == 200
        page = login(browser, base, op, TASKS)
        page.locator("a.remove-link").first.wait_for()
        page.screenshot(path=str(artifacts / "tasks-operator.png"), full_page=True)
        page.goto(f"{base}{TASKS}/billing")
        assert page.locator("#routed tbody tr").count() == 1 and "routers" in page.locator("#goes-to").inner_text()
        reason = f"e2e {RUN}: billing moves to its own model"
        for attempt in range(2):
            page.fill("#rm-reason", reason)
            page.screenshot(path=str(artifacts / "tasks-remove-impact.png"), full_page=True)
            page.locator("#remove-form button[type=submit]").click()
            page.locator("#remove-result, #task-problem").first.wait_for()
            problem = page.locator("#task-problem")
            # Airflow's SQLite metadata DB can be locked for > 5 s by a running task on a loaded machine: its API
            # answers 500 and the screen 503 with nothing triggered or recorded. One more try then.
            if not problem.count() or attempt or "cannot be reached" not in problem.inner_text():
                break
        assert page.locator("#remove-result").count() == 1, page.locator("#task-problem").inner_text()
        run_id = parse_qs(urlsplit(page.url).query)["requested"][0]
        page.screenshot(path=str(artifacts / "tasks-remove-requested.png"), full_page=True)

        status, run = call(base, "GET", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}", admin)
        assert status == 200 and run["conf"] == {"remove_task": "billing", "reason": reason}
        assert run["triggering_user_name"] == op.username
        audit = call(base, "GET", f"/clm/api/v1/audit?action=task.remove_requested&actor={op.username}&limit=5",
                     admin)[1]["items"]  # fmt: skip
        assert (audit[0]["actor"], audit[0]["to_value"], audit[0]["reason"]) == (f"airflow:{op.username}", run_id,
                                                                                  reason)  # fmt: skip
        assert "billing" not in call(base, "GET", "/clm/api/v1/tasks", admin)[1]["configured"]
    finally:
        if run_id:
            call(base, "DELETE", f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}", admin)
        call(base, "PATCH", f"/api/v2/dags/{DAG}", admin, {"is_paused": was_paused})
