"""Every operator action of the Training and Serving screens in a real browser against the real stack: retrain now,
promote a registered version, roll back. As an operator each works and is audited; as a viewer the buttons are
absent and a forged POST is refused with nothing changed. Chromium is Debian's (/usr/bin/chromium).

Retrain and promote trigger DAG runs through Airflow's REST API with the caller's token: the DAGs are paused first,
so the runs stay queued, and the runs are deleted (and the DAGs' pause state restored) at the end, so the other e2e
tests see no training or promotion of ours. The rollback is synchronous (the screen calls the same rollback as the
CLI and ``clm_rollback``): it moves traffic, so the champion from before is rolled forward again with
``clm rollback --to`` at the end. Run alone (no cycle test before it), the module first makes two champions and a
candidate without training: registered versions and ``alias`` promotions, with ``deploy.strategy: alias`` saved as
a configuration revision for the module's duration (no serving slot is touched), and the strategy revision undone
at the end. Screenshots of each step go to ``build/screens/`` (``$CLM_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from tests.e2e.browsing import login

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAINING = "/pluginsv2/clm/training"
SERVING = "/pluginsv2/clm/serving"
TRAINING_DAG, PROMOTION_DAG = "clm_continual_training", "clm_promotion"
RUN = uuid.uuid4().hex[:8]
"""Marks this session's reasons, so entries of ours are told from any other."""


def call(base: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw[:500].decode(errors="replace")}


@dataclass
class Stack:
    base: str
    admin: str
    """An admin JWT, for Airflow's own REST API (pause, runs) and reading clm's."""
    cli_env: dict[str, str]
    """``clm`` CLI environment that rolls back the way the screen does (the ``alias`` strategy when seeded)."""
    admin_login: tuple[str, str]

    def get(self, path: str) -> dict:
        status, body = call(self.base, "GET", path, self.admin)
        assert status == 200, (path, status, body)
        return body

    def runs(self, dag_id: str) -> int:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=1")["total_entries"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def audit(self, **filters: str) -> dict:
        return self.get(f"/clm/api/v1/audit?{urlencode(filters | {'limit': 5})}")

    def champion(self, timeout: float = 120) -> str | None:
        """The champion, once MLflow answered the page (a busy MLflow reads as unknown aliases, not as none)."""
        deadline = time.monotonic() + timeout
        while (serving := self.get("/clm/api/v1/serving"))["registry"] == "unreachable":
            assert time.monotonic() < deadline, f"MLflow did not answer /serving within {timeout:.0f} s"
            time.sleep(2)
        return serving["aliases"]["champion"]


@pytest.fixture(scope="module")
def stack(airflow_stack):
    """The shared stack with a version to promote and a champion to roll back from; made here when run alone."""
    s = Stack(airflow_stack.base_url, airflow_stack.token(), dict(airflow_stack.env),
              (airflow_stack.username, airflow_stack.password))  # fmt: skip
    from clm_lib.services.airflow_client import AirflowClient

    admin = AirflowClient(airflow_stack.base_url, airflow_stack.username, airflow_stack.password)
    for dag_id in (TRAINING_DAG, PROMOTION_DAG):  # a fresh stack's dag-processor may not have parsed them yet
        admin.wait_for_dag(dag_id, timeout=240)
    undo = None
    if s.champion() is None:  # run alone: nothing promoted yet
        undo = _seed(airflow_stack)
        s.cli_env |= {"CLM__DEPLOY__STRATEGY": "alias"}
    assert _ready(s), s.get("/clm/api/v1/promotion/next")
    try:
        yield s
    finally:
        if undo is not None:
            undo()


def _ready(s: Stack) -> bool:
    plan = s.get("/clm/api/v1/promotion/next")
    return bool(plan["eligible"]) and not plan["busy"] and s.get("/clm/api/v1/serving")["rollback"]["possible"]


def _seed(airflow_stack):
    """Two ``alias`` promotions and a third candidate, with ``deploy.strategy: alias`` as the live revision;
    returns what undoes the revision."""
    from clm_lib.config import load_config
    from clm_lib.config_store import commit_change, live_revision, revert
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.deploy.rollout import rollout
    from clm_lib.registry.mlflow_registry import client

    file_cfg = load_config(environ=airflow_stack.env)
    cfg = load_config(environ=airflow_stack.env | {"CLM__DEPLOY__STRATEGY": "alias"})
    with session_scope(file_cfg.database_url) as s:
        base = live_revision(s, file_cfg).number
        mine = commit_change(s, file_cfg=file_cfg, changes={"deploy.strategy": "alias"}, base_revision=base,
                             actor="e2e", reason="operator-action e2e: no serving slot is touched").number  # fmt: skip

    def undo() -> None:
        with session_scope(file_cfg.database_url) as s:
            revert(s, file_cfg=file_cfg, to=base, base_revision=mine, actor="e2e", reason="operator-action e2e done")

    c, name = client(cfg), cfg.registry.model_name
    try:
        if not c.search_registered_models(filter_string=f"name='{name}'"):
            c.create_registered_model(name)
        for promote in (True, True, False):
            # A remote-looking source: the MLflow server refuses local paths outside a run; nothing loads it.
            version = str(c.create_model_version(name, source="s3://clm-e2e/no-artifact").version)
            run_id = f"e2e-ops-{version}-{RUN}"
            with session_scope(cfg.database_url) as s:
                s.add(TrainingRun(id=run_id, status="succeeded", base_model="b", config_hash="h",
                                  model_version=version, tasks=["routers"]))  # fmt: skip
                s.flush()
                s.add(Evaluation(training_run_id=run_id, model_version=version, tasks=["routers"],
                                 scores={"routers": 90.0}, matrix=[[90.0]], average_accuracy=90.0))  # fmt: skip
            if promote:
                assert rollout(cfg, version, actor="e2e", reason="e2e seed").status == "promoted"
    except BaseException:
        undo()
        raise
    return undo


@contextmanager
def paused(s: Stack, *dag_ids: str):
    """Pause the DAGs (the runs we trigger stay queued); afterwards delete the runs of ours and restore each DAG's
    pause state. Yields the list to put our run ids in."""
    was = {d: s.get(f"/api/v2/dags/{d}")["is_paused"] for d in dag_ids}
    ours: list[tuple[str, str]] = []
    try:
        for d in dag_ids:
            assert call(s.base, "PATCH", f"/api/v2/dags/{d}", s.admin, {"is_paused": True})[0] == 200
        yield ours
    finally:
        for d, run_id in ours:
            call(s.base, "DELETE", f"/api/v2/dags/{d}/dagRuns/{quote(run_id, safe='')}", s.admin)
        for d, state in was.items():
            call(s.base, "PATCH", f"/api/v2/dags/{d}", s.admin, {"is_paused": state})


def _asked(page, key: str) -> str:
    return parse_qs(urlsplit(page.url).query)[key][0]


def test_an_operator_retrains_promotes_and_rolls_back_audited(stack, stack_users, browser, artifacts):
    op = stack_users["operator"]
    actor = f"airflow:{op.username}"
    with paused(stack, TRAINING_DAG, PROMOTION_DAG) as ours:
        # Retrain now, on the Training screen.
        page = login(browser, stack.base, op.username, op.password, TRAINING)
        reason = f"e2e {RUN}: new billing data"
        page.fill("#rt-reason", reason)
        page.screenshot(path=str(artifacts / "operator-retrain-form.png"), full_page=True)
        page.locator("#retrain button[type=submit]").click()
        page.locator("#retrain-result").wait_for()
        run_id = _asked(page, "requested")
        ours.append((TRAINING_DAG, run_id))
        page.screenshot(path=str(artifacts / "operator-retrain-requested.png"), full_page=True)
        run = stack.run(TRAINING_DAG, run_id)
        assert (run["conf"], run["triggering_user_name"]) == ({"force": True, "reason": reason}, op.username)
        [entry] = stack.audit(action="training.requested", actor=op.username)["items"][:1]
        assert (entry["actor"], entry["to_value"], entry["reason"]) == (actor, run_id, reason)

        # Promote a registered version, on the Serving screen: a clm_promotion run in the operator's name.
        page.goto(stack.base + SERVING)
        plan = page.locator("#next-promotion")
        assert plan.locator("#next-plan").is_visible() and plan.locator("#gate-rules li").count() == 3
        version = stack.get("/clm/api/v1/promotion/next")["eligible"][0]["version"]
        champion = stack.champion()
        row = page.locator(f"#eligible-{version}")
        row.locator("details.promote summary").click()
        reason = f"e2e {RUN}: v{version} answers billing better"
        row.locator(f"#pr-reason-{version}").fill(reason)
        page.screenshot(path=str(artifacts / "operator-promote-form.png"), full_page=True)
        row.locator("button[type=submit]").click()
        page.locator("#promote-result").wait_for()
        run_id = _asked(page, "promotion_requested")
        ours.append((PROMOTION_DAG, run_id))
        page.screenshot(path=str(artifacts / "operator-promote-requested.png"), full_page=True)
        run = stack.run(PROMOTION_DAG, run_id)
        assert (run["conf"], run["triggering_user_name"]) == ({"version": version, "reason": reason}, op.username)
        assert run["state"] == "queued" and stack.champion() == champion  # the DAG's gate decides, once it runs
        [entry] = stack.audit(action="promotion.requested", actor=op.username)["items"][:1]
        assert (entry["actor"], entry["target"], entry["to_value"]) == (actor, PROMOTION_DAG, run_id)

        # Roll back, on the Serving screen: synchronous, the champion moves now.
        serving = stack.get("/clm/api/v1/serving")
        # The form's first choice: the default (the previous champion), or the first version named.
        target = serving["rollback"]["targets"][0]["version"] or serving["aliases"]["previous"]
        page.locator("[aria-label='rollback'] details.rollback summary").click()
        page.fill("#rb-reason", f"e2e {RUN}: answers got worse")
        page.screenshot(path=str(artifacts / "operator-rollback-form.png"), full_page=True)
        page.locator("[aria-label='rollback'] button[type=submit]").click()
        try:
            page.locator("#rollback-result").wait_for()
            page.screenshot(path=str(artifacts / "operator-rolled-back.png"), full_page=True)
            assert stack.champion() == target != champion
            [move] = stack.audit(action="alias.champion", actor=op.username)["items"][:1]
            assert (move["actor"], move["from_value"], move["to_value"]) == (actor, champion, target)
        finally:
            if stack.champion() != champion:  # roll forward: the other e2e tests expect the champion of before
                back = subprocess.run([sys.executable, "-m", "clm_lib.cli", "rollback", "--to", champion, "--reason",
                                       f"e2e {RUN}: restore the champion"], env=stack.cli_env, capture_output=True,
                                      text=True, timeout=600)  # fmt: skip
                assert back.returncode == 0, back.stdout + back.stderr
        assert stack.champion() == champion


def test_a_viewer_has_no_buttons_and_a_forged_post_changes_nothing(stack, stack_users, browser, artifacts):
    op, viewer = stack_users["operator"], stack_users["viewer"]
    # The admin sees what the operator sees: the plan and the buttons.
    page = login(browser, stack.base, *stack.admin_login, SERVING)
    assert page.locator("#next-promotion details.promote").count() >= 1
    assert page.locator("[aria-label='rollback'] details.rollback").count() == 1
    page.screenshot(path=str(artifacts / "admin-serving.png"), full_page=True)
    # A form token of a real page (an operator's): the viewer's forged POSTs carry it and are still refused.
    token = login(browser, stack.base, op.username, op.password, SERVING).locator("input[name=clm_csrf]").first
    token = token.get_attribute("value")
    assert token

    def state():
        return (stack.runs(TRAINING_DAG), stack.runs(PROMOTION_DAG), stack.audit(actor=viewer.username)["total"],
                stack.champion())  # fmt: skip

    before = state()
    assert before[2] == 0
    page = login(browser, stack.base, viewer.username, viewer.password, TRAINING)
    assert page.locator("#retrain form").count() == 0 and page.locator("input[name=clm_csrf]").count() == 0
    page.screenshot(path=str(artifacts / "viewer-training.png"), full_page=True)
    page.goto(stack.base + SERVING)
    page.locator("#next-promotion").wait_for()
    assert page.locator("form[method=post]").count() == 0 and page.locator("details.promote").count() == 0
    assert "needs permission to trigger <code>clm_promotion</code>" in page.content()
    page.screenshot(path=str(artifacts / "viewer-serving.png"), full_page=True)
    version = stack.get("/clm/api/v1/promotion/next")["eligible"][0]["version"]
    origin = {"Origin": stack.base}
    viewer_token = viewer.token(stack.base)
    forged = {
        f"{TRAINING}/retrain": {"clm_csrf": token, "reason": "forged"},
        f"{SERVING}/promote": {"clm_csrf": token, "version": version, "reason": "forged"},
        f"{SERVING}/rollback": {"clm_csrf": token, "reason": "forged", "to_version": ""},
    }
    for path, form in forged.items():
        answer = page.request.post(stack.base + path, form=form, headers=origin, max_redirects=0)
        assert answer.status == 403, (path, answer.status)
        assert "You are not allowed to see this page" in answer.text()
    for path, body in {"/clm/api/v1/promote": {"version": version, "reason": "forged"},
                       "/clm/api/v1/training/retrain": {"reason": "forged"},
                       "/clm/api/v1/rollback": {"reason": "forged"}}.items():  # fmt: skip
        status, said = call(stack.base, "POST", path, viewer_token, body)
        assert status == 403, (path, status, said)
    page.screenshot(path=str(artifacts / "viewer-after-forged-posts.png"), full_page=True)

    assert state() == before
