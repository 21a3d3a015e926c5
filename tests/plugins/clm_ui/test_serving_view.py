"""The serving page and its rollback button as the FAB provider serves them under /pluginsv2, with real users and
roles (FAB auth manager), a real MLflow registry and clm's database. Serving slots are the in-memory test double
(tests/clm_lib/deploy/fakes.py), put in place of ``get_backend``; the rollback itself is the real function."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.clm_lib.reporting.serving_history import FAST_DEPLOY, promote_two_then_reject_one, serving_ports_env

PAGE = "/clm/serving"
POST = "/clm/serving/rollback"
SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def clm_env(airflow_fab, tmp_path, mlflow_uri, monkeypatch):
    """clm's database and MLflow for this test, short bake windows; returns the config the views will load."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    for key, value in {"CLM_DATABASE_URL": url, "MLFLOW_TRACKING_URI": mlflow_uri, **FAST_DEPLOY}.items():
        monkeypatch.setenv(key, value)
    return load_config()


@pytest.fixture
def history(clm_env, register_version, monkeypatch):
    """v1 and v2 promoted, v3 rolled back automatically; the views' serving backend is the test double."""
    h = promote_two_then_reject_one(clm_env, register_version)
    monkeypatch.setattr("clm_lib.serving.backends.get_backend", lambda cfg, **kwargs: h.backend)
    return h


@pytest.fixture
def two_champions(clm_env, register_version, monkeypatch):
    """v1 then v2 promoted by the ``alias`` strategy (no serving): enough for requests refused before any rollback."""
    from clm_lib.config import load_config
    from clm_lib.deploy.rollout import rollout

    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    cfg = load_config()
    for _ in range(2):
        register_version(cfg)
        rollout(cfg)
    assert _champion(cfg) == "2"
    return cfg


def _as(client, tokens, name):
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client


def _form_token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def _champion(cfg) -> str | None:
    from clm_lib.registry.mlflow_registry import alias_version

    return alias_version(cfg, "champion")


def test_a_viewer_sees_what_serves_and_the_history_but_no_button(client, tokens, history):
    response = _as(client, tokens, "vic").get(PAGE)

    html = response.text
    assert response.status_code == 200
    assert 'aria-label="blue slot"' in html and 'aria-label="green slot"' in html
    assert 'class="role role-live">live</span>' in html and "<strong>100%</strong> of traffic" in html
    assert "rolled back automatically: golden-set exact match 0.0, floor 65.0" in html
    assert 'class="chip verdict-breach" title="golden-set exact match 0.0' in html
    history_table = html.split('id="history"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<td class="num">(\d+)</td>', history_table) == ["3", "2", "1"]
    assert history_table.count("airflow:clm_promotion") == 3
    assert "<form" not in html and "Roll back now" not in html
    assert "needs permission to trigger <code>clm_rollback</code>" in html
    assert 'class="active" aria-current="page">Serving</a>' in html


def test_an_operator_gets_the_button_with_a_reason_and_targets(client, tokens, history):
    response = _as(client, tokens, "otto").get(PAGE)

    html = response.text
    assert f'<form method="post" action="/pluginsv2{POST}"' in html
    assert re.search(r'<textarea id="rb-reason" name="reason"[^>]* required', html)
    assert f'<option value="">v{history.v1} (previous champion)</option>' in html
    assert _form_token(html)
    # The token needs no session: a Flask session cookie here would replace FAB's own (clm_ui/csrf.py says why).
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]


def test_the_button_is_disabled_with_the_reason_when_there_is_no_previous_version(
    client, tokens, clm_env, register_version, monkeypatch
):
    from clm_lib.deploy.rollout import rollout
    from tests.clm_lib.deploy.fakes import FakeBackend

    be = FakeBackend()
    v1 = register_version(clm_env)
    rollout(clm_env, backend=be, golden=None)
    monkeypatch.setattr("clm_lib.serving.backends.get_backend", lambda cfg, **kwargs: be)

    html = _as(client, tokens, "otto").get(PAGE).text

    assert '<button type="button" class="button" disabled aria-describedby="rb-why">Roll back</button>' in html
    assert f"No previous version: v{v1} is the first champion" in html
    assert "<form" not in html


def test_an_operator_rolls_back_and_the_audit_log_names_them(client, tokens, history, clm_env):
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)

    response = otto.post(POST, data={"clm_csrf": token, "reason": "billing answers got worse", "to_version": ""},
                         headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert target.path == f"/pluginsv2{PAGE}"
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert history.backend.serving() == history.v1 and _champion(clm_env) == history.v1
    with session_scope(clm_env.database_url) as s:
        move = s.scalars(select(AuditEntry).where(AuditEntry.action == "alias.champion")
                         .order_by(AuditEntry.id.desc())).first()  # fmt: skip
        assert (move.actor, move.from_value, move.to_value) == ("airflow:otto", history.v2, history.v1)
        assert move.reason == "rollback: billing answers got worse"
    page = otto.get(PAGE, query_string=parse_qs(target.query)).text
    assert f"Rolled back: v{history.v2} → <strong>v{history.v1}</strong>." in page
    assert "by airflow:otto: “billing answers got worse”" in page
    assert re.search(r"All traffic on (blue|green) in \d+ ms \(loaded into the idle slot, then switched\)", page)


def test_a_named_target_version_is_passed_on(client, tokens, history, clm_env):
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)

    # v3 was rejected by the canary: it never served as champion, so the rollback (which got the name) refuses it.
    response = otto.post(POST, data={"clm_csrf": token, "reason": "v3 after all", "to_version": history.v3},
                         headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 409
    assert f"version {history.v3} never served as champion (rejected by the canary" in response.text
    assert history.backend.serving() == history.v2 and _champion(clm_env) == history.v2


def test_a_viewer_cannot_post(client, tokens, two_champions):
    response = _as(client, tokens, "vic").post(POST, data={"reason": "try"}, headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert "permission to trigger runs of the DAG &#39;clm_rollback&#39;" in response.text
    assert _champion(two_champions) == "2"


def test_an_anonymous_post_is_sent_to_login(client, two_champions):
    response = client.post(POST, data={"reason": "try"})

    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/auth/login/"
    assert _champion(two_champions) == "2"
    assert client.get(POST).status_code == 302  # after login, a GET of the form's address comes back to the page


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("cross_site_origin", "came from another site (https://evil.example)"),
        ("cross_site_referer", "came from another site (https://evil.example/page)"),
        ("null_origin", "came from another site (null)"),
        ("no_token", "no valid security token"),
        ("token_of_another_user", "not valid for you"),
        ("expired_token", "older than 12 hours"),
    ],
)
def test_forged_posts_are_refused(client, tokens, two_champions, flask_app, fab_user, case, says):
    from clm_ui import csrf

    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)
    headers = dict(SAME_ORIGIN)
    if case == "cross_site_origin":
        headers["Origin"] = "https://evil.example"
    elif case == "cross_site_referer":
        headers = {"Referer": "https://evil.example/page"}
    elif case == "null_origin":
        headers["Origin"] = "null"
    elif case == "no_token":
        token = ""
    elif case in ("token_of_another_user", "expired_token"):
        with flask_app.test_request_context():
            now = None if case == "token_of_another_user" else 1_000_000_000
            token = csrf.form_token(fab_user("ada" if case == "token_of_another_user" else "otto"), now=now)

    response = otto.post(POST, data={"clm_csrf": token, "reason": "forged"}, headers=headers)

    assert response.status_code == 403
    assert says in response.text and "Rollback not done." in response.text
    assert _champion(two_champions) == "2"


def test_a_post_without_origin_or_referer_is_decided_by_the_token(client, tokens, history, clm_env):
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)

    response = otto.post(POST, data={"clm_csrf": token, "reason": "privacy mode browser"})

    assert response.status_code == 303 and _champion(clm_env) == history.v1


def test_refusals_say_what_to_do_and_keep_the_form(client, tokens, history, clm_env, monkeypatch):
    from clm_lib.deploy.lock import holder_id, release, try_acquire

    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)

    empty = otto.post(POST, data={"clm_csrf": token, "reason": "  "}, headers=SAME_ORIGIN)
    assert empty.status_code == 400 and "Say why you roll back" in empty.text

    monkeypatch.setenv("CLM__DEPLOY__LOCK_WAIT_SECONDS", "0")
    holder = holder_id("a promotion step in another process")
    assert try_acquire(clm_env.database_url, holder, 60)
    try:
        busy = otto.post(POST, data={"clm_csrf": token, "reason": "latency spike"}, headers=SAME_ORIGIN)
    finally:
        release(clm_env.database_url, holder)
    assert busy.status_code == 409
    assert "busy: a promotion step in another process" in busy.text and "Try again when it is done" in busy.text
    assert ">latency spike</textarea>" in busy.text and '<details class="action rollback" open>' in busy.text
    assert _champion(clm_env) == history.v2


def test_fresh_install_page_explains_and_creates_nothing(client, tokens, airflow_fab, monkeypatch):
    import os
    from pathlib import Path

    for key, value in serving_ports_env().items():
        monkeypatch.setenv(key, value)
    home = Path(os.environ["CLM_HOME"])
    before = sorted(p.name for p in home.iterdir()) if home.exists() else []

    response = _as(client, tokens, "otto").get(PAGE)

    assert response.status_code == 200
    assert "no clm database yet" in response.text and "Serving has not been started" in response.text
    assert "No deployment yet." in response.text
    assert "Nothing to roll back to: no version is champion yet." in response.text
    assert (sorted(p.name for p in home.iterdir()) if home.exists() else []) == before


@pytest.mark.parametrize(
    ("error", "status", "shown"),
    [("serving", 503, "the router refused weights"), ("bug", 500, "the Airflow api-server log has the details")],
)
def test_a_failing_rollback_is_explained_without_a_traceback(client, tokens, two_champions, monkeypatch, error,
                                                             status, shown):  # fmt: skip
    from clm_lib.errors import ServingError

    def fails(*args, **kwargs):
        raise ServingError("the router refused weights") if error == "serving" else RuntimeError("secret internals")

    monkeypatch.setattr("clm_lib.deploy.rollback.rollback", fails)
    otto = _as(client, tokens, "otto")
    token = _form_token(otto.get(PAGE).text)

    response = otto.post(POST, data={"clm_csrf": token, "reason": "latency"}, headers=SAME_ORIGIN)

    assert response.status_code == status and shown in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text


# --- The next promotion and the promote button ----------------------------------------------------------------

PROMOTE = "/clm/serving/promote"


def _promotion_requests(cfg) -> list:
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    with session_scope(cfg.database_url) as s:
        found = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.requested")).all()
        return [(e.actor, e.to_value, e.reason) for e in found]


def test_the_plan_of_the_next_promotion_and_what_each_past_one_used(client, tokens, history):
    html = _as(client, tokens, "vic").get(PAGE).text

    plan = html.split('id="next-promotion"', 1)[1].split("</section>", 1)[0]
    assert "Gate, load into the idle slot, smoke test, traffic 10% → 50% → 100% with a 0.05 s bake window" in plan
    assert re.search(r"<dt>Traffic steps</dt><dd>10 → 50 → 100% of traffic on the candidate</dd>", plan)
    assert "95th-percentile latency at most 500 ms (judged on at least 10 request(s)" in plan
    assert "no task the champion knew may drop by more than 5 accuracy points" in plan
    eligible = plan.split('id="eligible"', 1)[1]
    assert f'id="eligible-{history.v1}"' in eligible and f'id="eligible-{history.v3}"' in eligible
    assert f'id="eligible-{history.v2}"' not in eligible  # the champion is not offered
    assert "rejected by the canary" in eligible.split(f'id="eligible-{history.v3}"', 1)[1]
    assert "<form" not in html and "needs permission to trigger <code>clm_promotion</code>" in plan
    history_table = html.split('id="history"', 1)[1].split("</table>", 1)[0]
    assert history_table.count("canary 10 → 50 → 100% · bake 0.05 s") == 3  # recorded when each started


def test_an_operator_requests_a_promotion_through_the_dag(client, tokens, history, clm_env, fake_airflow):
    otto = _as(client, tokens, "otto")
    page = otto.get(PAGE).text
    assert f'<input type="hidden" name="version" value="{history.v1}">' in page
    assert f'<form method="post" action="/pluginsv2{PROMOTE}"' in page

    form = {"clm_csrf": _form_token(page), "version": history.v1, "reason": "v1 answered <b>billing</b> better"}
    response = otto.post(PROMOTE, data=form, headers=SAME_ORIGIN)

    assert response.status_code == 303, response.text
    target = urlsplit(response.headers["Location"])
    run_id = "manual__2026-12-07T10:00:00+00:00"
    assert parse_qs(target.query) == {"promotion_requested": [run_id], "version": [history.v1]}
    conf = {"version": history.v1, "reason": "v1 answered <b>billing</b> better"}
    assert [(seen["path"], seen["body"]["conf"]) for seen in fake_airflow.seen] == [
        ("/api/v2/dags/clm_promotion/dagRuns", conf)]  # fmt: skip
    assert fake_airflow.seen[0]["auth"] == f"Bearer {tokens['otto']}"
    assert _promotion_requests(clm_env) == [("airflow:otto", run_id, conf["reason"])]
    assert _champion(clm_env) == history.v2 and history.backend.serving() == history.v2  # the gate decides, later
    shown = otto.get(PAGE, query_string=parse_qs(target.query)).text
    assert 'id="promote-result"' in shown and f"Promotion of v{history.v1} requested." in shown
    assert "/dags/clm_promotion/runs/manual__2026-12-07T10%3A00%3A00%2B00%3A00" in shown


def test_a_viewer_cannot_promote(client, tokens, history, clm_env, fake_airflow):
    response = _as(client, tokens, "vic").post(PROMOTE, data={"version": history.v1, "reason": "try"},
                                               headers=SAME_ORIGIN)  # fmt: skip

    assert response.status_code == 403
    assert "permission to trigger runs of the DAG &#39;clm_promotion&#39;" in response.text
    assert fake_airflow.seen == [] and _promotion_requests(clm_env) == []


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("champion", 409, "is already the champion"),
        ("unknown", 404, "MLflow has no version 99"),
        ("no_reason", 400, "Say why you promote"),
        ("not_a_number", 400, "is not a model version number"),
        ("forged", 403, "no valid security token"),
    ],
)
def test_a_refused_promotion_says_why_and_triggers_nothing(client, tokens, history, clm_env, fake_airflow, case,
                                                           status, says):  # fmt: skip
    otto = _as(client, tokens, "otto")
    form = {"clm_csrf": _form_token(otto.get(PAGE).text), "version": history.v1, "reason": "why"}
    form |= {"champion": {"version": history.v2}, "unknown": {"version": "99"}, "no_reason": {"reason": " "},
             "not_a_number": {"version": "v1"}, "forged": {"clm_csrf": ""}}[case]  # fmt: skip

    response = otto.post(PROMOTE, data=form, headers=SAME_ORIGIN)

    assert response.status_code == status and says in response.text
    assert "Promotion not requested." in response.text
    assert fake_airflow.seen == [] and _promotion_requests(clm_env) == []
