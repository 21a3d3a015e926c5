"""The router over real HTTP, in front of two small stand-in slots (FastAPI apps that answer with their name).

The stand-ins load no model, so these tests exercise the router's own work: the weighted split, the atomic
switch under concurrent load, the admin token, retries and error accounting when a slot dies, feedback routing.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clm_lib.serving.router import Router

from .helpers import running

TOKEN = "test-token"


def stand_in(name: str, delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"ready": True, "version": name, "slot": name}

    @app.post("/v1/completions")
    async def completions():
        await asyncio.sleep(delay_s)
        return {"id": f"cmpl-{name}-1", "model": f"m/{name}", "choices": [{"text": name}]}

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        body = await request.json()
        return {"response_id": body["response_id"], "rating": body["rating"], "served_by": name}

    return app


@pytest.fixture
def slots():
    with running(stand_in("blue", 0.02)) as blue, running(stand_in("green", 0.02)) as green:
        yield {"blue": blue, "green": green}


def make_router(urls: dict[str, str], weights: dict[str, int]) -> Router:
    return Router(urls, weights, token=TOKEN, timeout_s=10, health_interval_s=0.1, window_s=600)


def put_weights(url: str, weights: dict, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.put(f"{url}/router/weights", json={"weights": weights}, headers=headers)


def served_by(url: str, n: int) -> list[str]:
    with httpx.Client() as c:
        return [c.post(f"{url}/v1/completions", json={}).json()["choices"][0]["text"] for _ in range(n)]


def test_weights_split_traffic_exactly(slots):
    with running(make_router(slots, {"blue": 90, "green": 10})) as url:
        got = served_by(url, 50)
        assert got.count("green") == 5 and got.count("blue") == 45
        # Smooth round robin spreads the canary's share instead of sending it in a burst.
        assert max(len(run) for run in "".join(s[0] for s in got).split("g")) <= 9
        assert put_weights(url, {"blue": 0, "green": 100}).json()["previous"] == {"blue": 90, "green": 10}
        assert set(served_by(url, 20)) == {"green"}
        assert httpx.get(f"{url}/router/weights").json()["weights"] == {"blue": 0, "green": 100}


def test_switch_under_load_is_atomic_and_fails_nothing(slots):
    """8 concurrent clients for ~1.5 s; the switch happens mid-way. Every request succeeds, and every request
    sent after the switch call returned is answered by the new slot."""
    results: list[tuple[float, int, str]] = []

    async def client(url: str, stop_at: float) -> None:
        async with httpx.AsyncClient() as c:
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                r = await c.post(f"{url}/v1/completions", json={})
                results.append((sent, r.status_code, r.json()["choices"][0]["text"] if r.status_code == 200 else ""))

    async def scenario(url: str) -> tuple[float, float]:
        stop_at = time.monotonic() + 1.5
        clients = [asyncio.create_task(client(url, stop_at)) for _ in range(8)]
        await asyncio.sleep(0.7)
        async with httpx.AsyncClient() as admin:
            t0 = time.monotonic()
            r = await admin.put(
                f"{url}/router/weights",
                json={"weights": {"blue": 0, "green": 100}},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            t1 = time.monotonic()
        assert r.status_code == 200
        await asyncio.gather(*clients)
        return t0, t1

    with running(make_router(slots, {"blue": 100, "green": 0})) as url:
        t0, t1 = asyncio.run(scenario(url))
    assert len(results) > 50
    assert all(status == 200 for _, status, _ in results), "a request failed during the switch"
    assert {slot for sent, _, slot in results if sent < t0} == {"blue"}
    assert {slot for sent, _, slot in results if sent > t1} == {"green"}


def test_weights_need_the_token_and_valid_values(slots):
    with running(make_router(slots, {"blue": 100, "green": 0})) as url:
        assert put_weights(url, {"blue": 0, "green": 100}, token=None).status_code == 401
        assert put_weights(url, {"blue": 0, "green": 100}, token="guess").status_code == 401
        bad = put_weights(url, {"blue": 50, "green": 40})
        assert bad.status_code == 400 and "sum to 100" in bad.json()["error"]["message"]
        assert put_weights(url, {"red": 100}).status_code == 400
        assert httpx.get(f"{url}/router/weights").json()["weights"] == {"blue": 100, "green": 0}


def test_a_killed_slot_is_retried_elsewhere_and_counted(tmp_path):
    blue_server = running(stand_in("blue"))
    green_server = running(stand_in("green"))
    with blue_server as blue, green_server as green:
        router = make_router({"blue": blue, "green": green}, {"blue": 50, "green": 50})
        with running(router) as url:
            since = time.time()
            green_server.__exit__(None, None, None)  # green dies mid-canary
            answers = served_by(url, 20)
            assert answers == ["blue"] * 20, "clients see no failure: green's requests went to blue"
            stats = httpx.get(f"{url}/router/stats", params={"slot": "green", "since": since}).json()
            assert stats["errors"] == stats["requests"] == 10
            assert httpx.get(f"{url}/router/stats", params={"slot": "blue", "since": since}).json()["errors"] == 0
            metrics = httpx.get(f"{url}/metrics").text
            assert 'clm_router_upstream_errors_total{reason="connect",slot="green"} 10.0' in metrics
            assert 'clm_router_retries_total{from_slot="green",to_slot="blue"} 10.0' in metrics
            time.sleep(0.3)  # a health check or two
            view = httpx.get(f"{url}/router/weights").json()["slots"]
            assert view["green"]["healthy"] is False and view["blue"]["healthy"] is True
            assert 'clm_router_slot_healthy{slot="green"} 0.0' in httpx.get(f"{url}/metrics").text
            refused = put_weights(url, {"blue": 0, "green": 100})
            assert refused.status_code == 409 and "green is not healthy" in refused.json()["error"]["message"]
            blue_server.__exit__(None, None, None)
            time.sleep(0.3)
            failed = httpx.post(f"{url}/v1/completions", json={})
            assert failed.status_code == 502 and "unreachable" in failed.json()["error"]["message"]
            assert httpx.get(f"{url}/healthz").status_code == 503


def test_feedback_goes_to_the_slot_that_answered(slots):
    with running(make_router(slots, {"blue": 100, "green": 0})) as url:
        since = time.time()
        r = httpx.post(f"{url}/v1/feedback", json={"response_id": "chatcmpl-green-abc", "rating": 0.25})
        assert r.json()["served_by"] == "green"
        green = httpx.get(f"{url}/router/stats", params={"slot": "green", "since": since}).json()
        assert (green["feedback_count"], green["feedback_mean"]) == (1, 0.25)
        assert httpx.get(f"{url}/router/stats", params={"slot": "purple"}).status_code == 400


def test_no_weighted_slot_answers_503(slots):
    with running(make_router(slots, {"blue": 0, "green": 0})) as url:
        r = httpx.post(f"{url}/v1/completions", json={})
        assert r.status_code == 503 and "all weights are 0" in r.json()["error"]["message"]


def picky(name: str) -> FastAPI:
    """A stand-in slot that answers a completion with the status its body asks for, and fails every feedback."""
    app = stand_in(name)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        status = (await request.json()).get("status", 200)
        return JSONResponse({"error": {"message": str(status)}} if status != 200 else {"ok": 1}, status_code=status)

    @app.get("/v1/models")
    async def models():
        return JSONResponse({"error": {"message": "broken"}}, status_code=500)

    return app


def test_only_completions_answered_or_failed_by_the_slot_count_in_the_bake_window():
    with running(picky("blue")) as blue, running(make_router({"blue": blue}, {"blue": 100, "green": 0})) as url:
        since = time.time()
        with httpx.Client() as c:
            for status in (200, 200, 400, 401, 404, 413, 422, 429, 500, 503):
                assert c.post(f"{url}/v1/chat/completions", json={"status": status}).status_code in (status, 502)
            assert c.get(f"{url}/v1/models").status_code == 500
        stats = httpx.get(f"{url}/router/stats", params={"slot": "blue", "since": since}).json()
        metrics = httpx.get(f"{url}/metrics").text
    # 200, 200, 500 and the 503 (unavailable; no healthy slot to retry on) are judged; 4xx and /v1/models are not.
    assert (stats["requests"], stats["errors"]) == (4, 2)
    assert 'clm_router_requests_total{code="400",slot="blue"} 1.0' in metrics, "Prometheus still sees every answer"


def test_a_body_over_the_limit_is_refused_before_forwarding(slots):
    router = Router(slots, {"blue": 100, "green": 0}, token=TOKEN, timeout_s=10, window_s=600, max_body_bytes=4096)
    with running(router) as url:
        big = httpx.post(f"{url}/v1/completions", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert big.status_code == 413 and "larger than 4096 bytes" in big.json()["error"]["message"]
        weights = httpx.put(f"{url}/router/weights", content=b"{" + b" " * 5000 + b"}",
                            headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert weights.status_code == 413
        assert httpx.post(f"{url}/v1/completions", json={}).status_code == 200
