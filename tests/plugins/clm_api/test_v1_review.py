"""``/clm/api/v1/review`` (the corrections queue) and ``/v1/keys`` (serving API keys) as Airflow's api-server
mounts them: who may read and decide, all-or-nothing decisions, 404/409 naming the ids, and the audit log."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.audit_history import HOSTILE, add_corrections
from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"


@pytest.fixture
def queue(airflow_fab, tmp_path, monkeypatch):
    """Three corrections pending review in a fresh clm database."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    cfg = load_config()
    upgrade(cfg.database_url)
    return cfg, add_corrections(cfg.database_url, ["Restart the router, then", HOSTILE, "Call billing"])


def _audit(cfg, prefix: str):
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    with session_scope(cfg.database_url) as s:
        rows = s.query(AuditEntry).filter(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id).all()
        return [(r.action, r.target, r.actor, r.reason) for r in rows]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/review"),
        ("post", "/review/accept"),
        ("post", "/review/reject"),
        ("get", "/keys"),
        ("post", "/keys"),
        ("post", "/keys/1/revoke"),
    ],
)
def test_anonymous_is_401(api, method, path):
    assert getattr(api, method)(V1 + path).status_code == 401


def test_a_viewer_sees_the_queue_but_cannot_decide(api, tokens, queue):
    cfg, ids = queue
    headers = bearer(tokens, "vic")

    body = api.get(f"{V1}/review", headers=headers).json()
    accept = api.post(f"{V1}/review/accept", json={"ids": ids}, headers=headers)
    reject = api.post(f"{V1}/review/reject", json={"ids": ids, "reason": "no"}, headers=headers)

    assert (body["total"], [i["id"] for i in body["items"]]) == (3, ids)
    assert body["items"][1]["correction"] == HOSTILE  # data as sent; escaping is the display's job
    assert body["counts"] == {"pending_review": 3, "accepted": 0, "rejected": 0}
    assert (accept.status_code, reject.status_code) == (403, 403)
    assert api.get(f"{V1}/review", headers=headers).json()["total"] == 3
    assert _audit(cfg, "feedback.") == []
    assert api.get(f"{V1}/review", headers=bearer(tokens, "pat")).status_code == 403


def test_an_operator_accepts_and_the_audit_log_names_them(api, tokens, queue):
    cfg, ids = queue

    response = api.post(
        f"{V1}/review/accept", json={"ids": ids[:2], "reason": "checked"}, headers=bearer(tokens, "otto")
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "accepted" and [i["status"] for i in body["items"]] == ["accepted", "accepted"]
    assert (cfg.landing_dir / body["landing_file"]).is_file()
    assert _audit(cfg, "feedback.") == [("feedback.accept", f"serving_feedback:{i}", "airflow:otto", "checked")
                                        for i in ids[:2]]  # fmt: skip
    left = api.get(f"{V1}/review", headers=bearer(tokens, "vic")).json()
    assert [i["id"] for i in left["items"]] == ids[2:] and left["counts"]["accepted"] == 2


def test_a_rejection_needs_a_reason_and_is_audited(api, tokens, queue):
    cfg, ids = queue
    headers = bearer(tokens, "uma")

    no_reason = api.post(f"{V1}/review/reject", json={"ids": [ids[1]], "reason": "  "}, headers=headers)
    done = api.post(f"{V1}/review/reject", json={"ids": [ids[1]], "reason": "prompt injection"}, headers=headers)

    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    assert done.status_code == 200 and done.json()["items"][0]["review_reason"] == "prompt injection"
    assert _audit(cfg, "feedback.") == [("feedback.reject", f"serving_feedback:{ids[1]}", "airflow:uma",
                                         "prompt injection")]  # fmt: skip


def test_unknown_ids_are_404_decided_ones_409_and_nothing_changes(api, tokens, queue):
    _, ids = queue
    headers = bearer(tokens, "otto")
    api.post(f"{V1}/review/reject", json={"ids": [ids[0]], "reason": "dup"}, headers=headers)

    unknown = api.post(f"{V1}/review/accept", json={"ids": [ids[1], 999]}, headers=headers)
    decided = api.post(f"{V1}/review/accept", json={"ids": [ids[0], ids[1]]}, headers=headers)

    assert unknown.status_code == 404 and unknown.json()["detail"] == "no feedback #999"
    assert decided.status_code == 409 and f"#{ids[0]}: rejected" in decided.json()["detail"]
    assert api.get(f"{V1}/review", headers=headers).json()["total"] == 2  # ids[1] and ids[2] still pending


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ids": []}, "ids"),
        ({"ids": [0]}, "ids"),
        ({"ids": [2**64]}, "ids"),
        ({"ids": [1], "extra": 1}, "extra"),
        ({"ids": [1], "reason": "r" * 2001}, "reason"),
    ],
)
def test_a_malformed_decision_is_a_422_naming_the_field(api, tokens, queue, body, field):
    response = api.post(f"{V1}/review/accept", json=body, headers=bearer(tokens, "otto"))

    assert response.status_code == 422
    assert field in [str(part) for e in response.json()["detail"] for part in e["loc"]]
    assert len(response.text) < 2000


def test_keys_are_for_operators_and_the_secret_is_shown_once(api, tokens, queue):
    cfg, _ = queue
    ops = bearer(tokens, "otto")

    assert api.get(f"{V1}/keys", headers=bearer(tokens, "vic")).status_code == 403
    assert api.post(f"{V1}/keys", json={"owner": "x"}, headers=bearer(tokens, "vic")).status_code == 403
    created = api.post(f"{V1}/keys", json={"owner": "billing-team", "scopes": ["infer", "feedback"]}, headers=ops)
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["secret"].startswith(f"clm_{key['prefix']}_") and key["active"] is True
    listed = api.get(f"{V1}/keys", headers=ops).json()
    assert [(k["owner"], k["scopes"], k["created_by"]) for k in listed] == [
        ("billing-team", ["infer", "feedback"], "airflow:otto")
    ]
    assert key["secret"] not in api.get(f"{V1}/keys", headers=ops).text

    revoked = api.post(f"{V1}/keys/{key['id']}/revoke", json={"reason": "leaked"}, headers=bearer(tokens, "ada"))
    again = api.post(f"{V1}/keys/{key['id']}/revoke", headers=ops)
    unknown = api.post(f"{V1}/keys/77/revoke", headers=ops)
    huge = api.post(f"{V1}/keys/{2**64}/revoke", headers=ops)

    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "airflow:ada"
    assert again.status_code == 409 and unknown.status_code == 404 and "#77" in unknown.json()["detail"]
    assert huge.status_code == 422
    assert api.get(f"{V1}/keys", params={"revoked": "false"}, headers=ops).json() == []
    assert [(a, r) for a, _, _, r in _audit(cfg, "serving_key.")] == [
        ("serving_key.create", f"key clm_{key['prefix']}_... for billing-team"),
        ("serving_key.revoke", "leaked"),
    ]


@pytest.mark.parametrize(("body", "field"), [({"owner": ""}, "owner"), ({"owner": "a", "scopes": ["admin"]}, "scopes"),
                                             ({"owner": "a", "scopes": []}, "scopes")])  # fmt: skip
def test_a_bad_key_request_is_a_422(api, tokens, queue, body, field):
    response = api.post(f"{V1}/keys", json=body, headers=bearer(tokens, "otto"))

    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_an_ingest_key_can_be_made_and_an_unknown_scope_is_a_422(api, tokens, queue):
    ops = bearer(tokens, "otto")

    made = api.post(f"{V1}/keys", json={"owner": "crm-webhook", "scopes": ["ingest"]}, headers=ops)
    unknown = api.post(f"{V1}/keys", json={"owner": "crm-webhook", "scopes": ["admin"]}, headers=ops)

    assert made.status_code == 201 and made.json()["scopes"] == ["ingest"], made.text
    assert unknown.status_code == 422 and "scopes" in unknown.text
