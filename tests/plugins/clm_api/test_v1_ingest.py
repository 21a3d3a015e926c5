"""``POST /clm/api/v1/ingest`` as Airflow's api-server mounts it: who may push (users who may trigger clm_ingest, API
keys with the ingest scope), idempotent retries, body limits with and without Content-Length, content types, and
concurrent POSTs that never curate a record twice. Pushed batches show where file batches do."""

from __future__ import annotations

import json
import threading

import pytest

from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"
LIMIT = 4000


def _record(i: int, task: str = "routers") -> dict[str, str]:
    return {"task": task, "prompt": f"My router {i} drops the connection every evening, what can I do?",
            "response": f"Update the firmware and move it away from the microwave (ticket {i})."}  # fmt: skip


@pytest.fixture
def home(airflow_fab, tmp_path, monkeypatch):
    """A fresh clm home (database migrated, empty lake) that the API resolves, bodies capped at LIMIT bytes."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("CLM_DATA_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("CLM__DATA__WEBHOOK__MAX_BODY_BYTES", str(LIMIT))
    cfg = load_config()
    upgrade(cfg.database_url)
    return cfg


def _curated(cfg) -> list[str]:
    from clm_lib.data import lake

    return lake.read_table(cfg, "curated", columns=["id"])["id"].to_pylist()


def _post(api, body, headers, kind="application/json"):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return api.post(f"{V1}/ingest", content=data, headers={"Content-Type": kind, **headers})


def test_who_may_push(api, tokens, home):
    body = [_record(1)]

    assert api.post(f"{V1}/ingest", json=body).status_code == 401
    assert _post(api, body, bearer(tokens, "vic")).status_code == 403
    assert _post(api, body, bearer(tokens, "pat")).status_code == 403
    assert _curated(home) == []
    assert _post(api, body, bearer(tokens, "uma")).status_code == 200


def test_an_operator_push_is_curated_reported_and_listed_with_the_batches(api, tokens, home):
    body = [_record(1), _record(1), "not a record", _record(2, task="spaceships"), _record(3, task="billing")]

    response = _post(api, body, bearer(tokens, "otto"))

    assert response.status_code == 200, response.text
    answer = response.json()
    counts = [answer[k] for k in ("rows_in", "rows_curated", "rows_duplicate", "rows_quarantined")]
    assert counts == [5, 2, 1, 2] and counts[0] == sum(counts[1:])
    assert [(o["line"], o["outcome"], o["reason"]) for o in answer["outcomes"]] == [
        (1, "curated", None), (2, "duplicate", None), (3, "quarantined", "not_an_object"),
        (4, "quarantined", "unknown_task"), (5, "curated", None)]  # fmt: skip
    assert answer["source"] == "webhook:airflow:otto"
    listed = api.get(f"{V1}/ingestion/batches", params={"source": "webhook"}, headers=bearer(tokens, "vic")).json()
    assert [(b["id"], b["rows_curated"]) for b in listed["items"]] == [(answer["batch_id"], 2)]
    from clm_lib.audit import recent
    from clm_lib.db import session_scope

    with session_scope(home.database_url) as s:
        pushed = recent(s, 10, action="ingest.pushed")
        assert [(e.actor, e.target) for e in pushed] == [("airflow:otto", f"ingestion_batch:{answer['batch_id']}")]


def test_a_retry_with_the_same_key_adds_nothing_and_another_body_is_refused(api, tokens, home):
    headers = {**bearer(tokens, "otto"), "Idempotency-Key": "delivery-42"}
    first = _post(api, [_record(1), _record(2)], headers)
    again = _post(api, [_record(1), _record(2)], headers)
    other = _post(api, [_record(3)], headers)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other.status_code == 409 and "'delivery-42'" in other.json()["detail"]
    assert len(_curated(home)) == 2
    bad_key = _post(api, [_record(3)], {**bearer(tokens, "otto"), "Idempotency-Key": "a b"})
    assert bad_key.status_code == 422 and "idempotency-key" in json.dumps(bad_key.json()).lower()


def test_concurrent_posts_do_not_duplicate_a_record(api, tokens, home):
    body = [_record(i) for i in range(5)]
    statuses, answers = [], []

    def send(key: str) -> None:
        response = _post(api, body, {**bearer(tokens, "otto"), "Idempotency-Key": key})
        statuses.append(response.status_code)
        answers.append(response.json())

    threads = [threading.Thread(target=send, args=(key,)) for key in ("k1", "k2", "k1", "k3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [200] * 4
    curated = _curated(home)
    assert len(curated) == 5 and len(set(curated)) == 5
    batches = {a["batch_id"]: a["rows_curated"] for a in answers}  # k1's twin got k1's answer back
    assert len(batches) == 3 and sorted(batches.values()) == [0, 0, 5]


def test_a_body_over_the_limit_is_413_with_or_without_content_length(api, tokens, home):
    big = json.dumps([_record(i) for i in range(40)]).encode()
    assert len(big) > LIMIT

    declared = _post(api, big, bearer(tokens, "otto"))
    chunked = api.post(f"{V1}/ingest", content=iter([big[:2000], big[2000:]]),
                       headers={"Content-Type": "application/json", **bearer(tokens, "otto")})  # fmt: skip

    assert declared.status_code == 413 and f"({LIMIT} bytes)" in declared.json()["detail"]
    assert chunked.status_code == 413 and f"({LIMIT} bytes)" in chunked.json()["detail"]
    assert "content-length" not in {k.lower() for k in chunked.request.headers}
    assert _curated(home) == []


def test_content_types(api, tokens, home):
    ops = bearer(tokens, "otto")
    ndjson = (json.dumps(_record(1)) + "\n{broken\n").encode()

    lines = _post(api, ndjson, ops, "application/x-ndjson")
    plain = _post(api, b"hello", ops, "text/plain")
    not_json = _post(api, b"[{", ops)
    upload = api.post(f"{V1}/ingest", files={"file": ("tickets.csv", b"task,prompt,response\nrouters,My router "
                                                      b"reboots at night,Swap the power supply.\n", "text/csv")},
                      headers=ops)  # fmt: skip

    assert lines.status_code == 200
    assert [(o["outcome"], o["reason"]) for o in lines.json()["outcomes"]] == [
        ("curated", None),
        ("quarantined", "malformed_json"),
    ]
    assert plain.status_code == 415
    assert not_json.status_code == 422 and "not JSON" in json.dumps(not_json.json())
    assert upload.status_code == 200, upload.text
    assert [o["outcome"] for o in upload.json()["outcomes"]] == ["curated"]
    assert len(_curated(home)) == 2


def test_api_keys_need_the_ingest_scope(api, home):
    from clm_lib.serving.keys import create_key

    _, ingest = create_key(home.database_url, owner="crm-webhook", scopes="ingest", actor="test")
    _, infer = create_key(home.database_url, owner="chat-app", scopes="infer,feedback", actor="test")

    allowed = _post(api, [_record(1)], {"Authorization": f"Bearer {ingest}"})
    refused = _post(api, [_record(2)], {"Authorization": f"Bearer {infer}"})
    unknown = _post(api, [_record(3)], {"Authorization": f"Bearer {ingest[:-4]}AAAA"})

    assert allowed.status_code == 200 and allowed.json()["source"] == "webhook:api_key:crm-webhook"
    assert refused.status_code == 403 and "'ingest' scope" in refused.json()["detail"]
    assert unknown.status_code == 401
    assert len(_curated(home)) == 1
