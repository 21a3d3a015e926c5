"""The Training pipeline and Continual strategy screens as the FAB provider serves them under /pluginsv2, with real
users and roles (FAB auth manager) over a seeded clm database. "Retrain now" goes to a loopback HTTP server standing
in for Airflow's REST API (``CLM_AIRFLOW_URL``; the tests' Airflow DB holds no clm DAG): the request it receives is
checked, and so is the audit log."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from tests.clm_lib.reporting.domain_history import seed_domain
from tests.clm_lib.reporting.training_history import HOSTILE, seed_training
from tests.plugins.helpers import signed_in

TRAINING = "/clm/training"
STRATEGY = "/clm/strategy"
POST = "/clm/training/retrain"
SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def seeded(airflow_fab, tmp_path, monkeypatch):
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_training(cfg.database_url, tmp_path / "runs")
    return cfg


def _form_token(html: str) -> str:
    return re.search(r'name="clm_csrf" value="([^"]+)"', html).group(1)


def _audit(cfg) -> list[AuditEntry]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(AuditEntry)))


def test_a_viewer_sees_the_runs_escaped_and_no_button(client, tokens, seeded):
    response = signed_in(client, tokens, "vic").get(TRAINING)

    html = response.text
    assert response.status_code == 200
    runs = html.split('id="runs"', 1)[1].split("</table>", 1)[0]
    assert [m for m in re.findall(r"<code>(tr-[a-e])</code>", runs)] == ["tr-e", "tr-d", "tr-c", "tr-b", "tr-a"]
    assert "drift check c2: task_mix" in runs and "clm_retrain_watch, for drift check c3" in runs
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
    assert 'id="next-check"' in html and "hourly at :17 UTC" in html and "overdue" in html
    assert 'action="/pluginsv2/clm/training/retrain"' not in html and "clm_csrf" not in html
    assert ">Training</a>" in html and ">Strategy</a>" in html  # the tab bar, from clm_ui.SCREENS


def test_a_run_in_detail(client, tokens, seeded):
    html = signed_in(client, tokens, "vic").get(TRAINING, query_string={"run": "tr-b"}).text

    detail = html.split('id="detail"', 1)[1]
    assert 'id="loss-chart"' in detail and "1000 steps" in detail and "training loss per step" in detail
    assert 'href="/dags/clm_continual_training/runs/asset_triggered__2026-11-21T09%3A00%3A00"' in detail
    assert "8.6e-43" in detail and "billing appeared: &lt;b&gt;new task&lt;/b&gt;" in detail
    manual = signed_in(client, tokens, "vic").get(TRAINING, query_string={"run": "tr-c"}).text
    assert 'id="loss-problem"' in manual and "no train_summary.json" in manual
    assert f'id="trigger-reason">{HOSTILE.replace("<", "&lt;").replace(">", "&gt;")}' in manual.replace("&#39;", "'")


def test_filters_unknown_runs_and_bad_filters(client, tokens, seeded):
    viewer = signed_in(client, tokens, "vic")
    only = viewer.get(TRAINING, query_string={"trigger": "manual"}).text
    assert re.findall(r"<code>(tr-[a-e])</code></a>", only) == ["tr-c"]
    missing = viewer.get(TRAINING, query_string={"run": "tr-<b>"})
    assert missing.status_code == 404 and "tr-&lt;b&gt;" in missing.text
    assert "<b>" not in missing.text.split("<main>")[1]
    bad = viewer.get(TRAINING, query_string={"status": "bogus"})
    assert bad.status_code == 422 and "Filter <code>status</code>" in bad.text


def test_the_strategy_screen(client, tokens, seeded):
    html = signed_in(client, tokens, "vic").get(STRATEGY, query_string={"run": "tr-b"}).text

    assert 'id="fraction-chart"' in html and "tr-b: replay fraction 31.0%" in html
    detail = html.split('id="detail"', 1)[1]
    assert "score changes at evaluation 1 of training run tr-a" in detail
    assert 'style="width: 50.0%"' in html  # tr-b's buffer after the run: half routers, half billing
    assert "model.embed_tokens" in detail and "the previous champion" in detail and "3.2e-07" in detail
    assert "orthogonality" in detail
    assert signed_in(client, tokens, "vic").get(STRATEGY, query_string={"run": "tr-x"}).status_code == 404


def test_the_strategy_screen_shows_domain_adaptations_escaped(client, tokens, seeded):
    empty = signed_in(client, tokens, "vic").get(STRATEGY).text
    assert 'id="domain"' in empty and "No domain-adapted base" in empty
    newer, older = seed_domain(seeded)
    html = signed_in(client, tokens, "vic").get(STRATEGY).text
    domain = html.split('id="domain"', 1)[1]
    assert domain.index(newer) < domain.index(older)  # newest first
    assert "original tasks -5.0 points" in domain and "new-domain tasks +25.5 points" in domain
    assert "7.500 → 5.250" in domain and "+25.5" in domain
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in domain


def test_store_down_says_which_store(client, tokens, airflow_fab, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    for page in (TRAINING, STRATEGY):
        response = signed_in(client, tokens, "vic").get(page)
        assert response.status_code == 503 and "clm&#39;s database cannot be read" in response.text
    assert not (tmp_path / "none.db").exists()


def test_an_operator_retrains_and_the_audit_log_names_them(client, tokens, seeded, fake_airflow):
    otto = signed_in(client, tokens, "otto")
    token = _form_token(otto.get(TRAINING).text)

    response = otto.post(POST, data={"clm_csrf": token, "reason": HOSTILE}, headers=SAME_ORIGIN)

    assert response.status_code == 303
    assert "requested=manual__2026-12-07T10" in response.headers["Location"]
    [seen] = fake_airflow.seen
    assert seen["auth"] == f"Bearer {tokens['otto']}"  # the caller's own token: Airflow's RBAC applies
    assert seen["path"] == "/api/v2/dags/clm_continual_training/dagRuns"
    assert seen["body"] == {"logical_date": None, "conf": {"force": True, "reason": HOSTILE}}
    [entry] = _audit(seeded)
    assert (entry.action, entry.actor, entry.reason) == ("training.requested", "airflow:otto", HOSTILE)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/pluginsv2/clm/training"
    shown = otto.get(TRAINING, query_string=location.query).text
    assert 'id="retrain-result"' in shown and "manual__2026-12-07T10:00:00+00:00" in shown


def test_a_viewer_cannot_post_and_nothing_changes(client, tokens, seeded, fake_airflow):
    response = signed_in(client, tokens, "vic").post(POST, data={"reason": "please"}, headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert fake_airflow.seen == [] and _audit(seeded) == []


@pytest.mark.parametrize("case", ["no_token", "other_site"])
def test_forged_posts_are_refused(client, tokens, seeded, fake_airflow, case):
    otto = signed_in(client, tokens, "otto")
    token = _form_token(otto.get(TRAINING).text)
    data = {"reason": "forged"} | ({} if case == "no_token" else {"clm_csrf": token})
    headers = {"Origin": "https://evil.example"} if case == "other_site" else SAME_ORIGIN

    response = otto.post(POST, data=data, headers=headers)

    assert response.status_code == 403 and 'id="retrain-problem"' in response.text
    assert fake_airflow.seen == [] and _audit(seeded) == []


def test_refusals_say_what_to_do(client, tokens, seeded, fake_airflow):
    otto = signed_in(client, tokens, "otto")
    token = _form_token(otto.get(TRAINING).text)
    empty = otto.post(POST, data={"clm_csrf": token, "reason": "  "}, headers=SAME_ORIGIN)
    assert empty.status_code == 400 and "Say why you retrain now" in empty.text
    fake_airflow.answer = (404, {"detail": "The Dag with ID: `clm_continual_training` was not found"})
    missing = otto.post(POST, data={"clm_csrf": token, "reason": "new data"}, headers=SAME_ORIGIN)
    assert missing.status_code == 404 and "Airflow has no DAG clm_continual_training" in missing.text
    assert "new data" in missing.text  # the form keeps what was typed
    assert _audit(seeded) == []


@pytest.mark.parametrize(
    ("page", "query"),
    [
        (TRAINING, {"offset": "-1"}),
        (TRAINING, {"offset": "9" * 40}),
        (TRAINING, {"run": "\x00\u202e"}),
        (TRAINING, {"run": "", "trigger": "", "status": ""}),
        (TRAINING, {"trigger": "drift", "offset": "100"}),
        (STRATEGY, {"run": "../tr-b"}),
        (STRATEGY, {"run": "x" * 5000}),
    ],
)
def test_odd_query_strings_never_answer_5xx(client, tokens, seeded, page, query):
    response = signed_in(client, tokens, "otto").get(page, query_string=query)
    assert response.status_code in (200, 404, 422) and "Traceback" not in response.text
