"""The ``local`` backend with real processes: two ``clm serve`` slots (tiny registered versions 1 and 2) and the
router, started once for the module. Checks what the promotion and rollback code rely on: deploy waits for health,
weights split and switch with no failed request under load, state survives into a second backend object (another
process), a killed slot shows in status and in live metrics, and traffic-carrying slots are protected."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import openai
import pytest

from clm_lib.errors import ServingError
from clm_lib.serving.backends import get_backend
from clm_lib.serving.backends.local import LocalBackend

from ..helpers import serving_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(serving_registry, tmp_path_factory):
    cfg = serving_cfg(tmp_path_factory.mktemp("local") / "home", serving_registry, health_interval_s="0.2")
    backend = get_backend(cfg)
    try:
        yield backend
    finally:
        backend.shutdown()


def ask(url: str, n: int) -> list[str]:
    body = {"model": "clm-assistant", "prompt": "my invoice is wrong", "max_tokens": 1}
    with httpx.Client(trust_env=False) as c:
        return [c.post(f"{url}/v1/completions", json=body).json()["model"] for _ in range(n)]


def test_deploy_two_versions_and_serve_through_the_router(backend: LocalBackend):
    blue = backend.deploy("blue", "1")
    assert (blue.version, blue.healthy, blue.weight) == ("1", True, 100)  # the first deploy takes the traffic
    green = backend.deploy("green", "2")
    assert (green.version, green.healthy, green.weight) == ("2", True, 0)
    backend.smoke_test("green")
    client = openai.OpenAI(base_url=f"{backend.router_url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model="clm-assistant", messages=[{"role": "user", "content": "hi there"}])
    assert answer.model == "clm-assistant/1"
    assert answer.id.startswith("chatcmpl-blue-")


def test_weights_split_and_a_second_backend_sees_the_same_slots(backend: LocalBackend):
    backend.set_weights({"blue": 75, "green": 25})
    other = LocalBackend(backend.cfg)  # what an Airflow task or the CLI builds in another process
    assert other.weights() == {"blue": 75, "green": 25}
    assert {s: st.version for s, st in other.status().items()} == {"blue": "1", "green": "2"}
    served = ask(backend.router_url, 8)
    assert served.count("clm-assistant/2") == 2 and served.count("clm-assistant/1") == 6


def test_switch_under_load_fails_no_request(backend: LocalBackend):
    backend.set_weights({"blue": 100, "green": 0})
    results: list[tuple[float, int, str]] = []
    body = {"model": "clm-assistant", "prompt": "my invoice is wrong", "max_tokens": 2}

    async def load(stop_at: float) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as c:
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                r = await c.post(f"{backend.router_url}/v1/completions", json=body)
                results.append((sent, r.status_code, r.json().get("model", "")))

    async def scenario() -> list[tuple[float, float]]:
        stop_at = time.monotonic() + 3.0
        clients = [asyncio.create_task(load(stop_at)) for _ in range(4)]
        switches = []
        for target in ({"blue": 0, "green": 100}, {"blue": 100, "green": 0}, {"blue": 0, "green": 100}):
            await asyncio.sleep(0.7)
            t0 = time.monotonic()
            await asyncio.to_thread(backend.set_weights, target)
            switches.append((t0, time.monotonic()))
        await asyncio.gather(*clients)
        return switches

    switches = asyncio.run(scenario())
    assert len(results) > 20
    assert all(status == 200 for _, status, _ in results)
    after_last = {model for sent, _, model in results if sent > switches[-1][1]}
    assert after_last == {"clm-assistant/2"}
    assert backend.weights() == {"blue": 0, "green": 100}


def test_traffic_carrying_slots_are_protected(backend: LocalBackend):
    with pytest.raises(ServingError, match="carries 100% of traffic"):
        backend.deploy("green", "1")
    with pytest.raises(ServingError, match="carries 100% of traffic"):
        backend.stop("green")
    with pytest.raises(ServingError, match="sum to 100"):
        backend.set_weights({"blue": 10})


def test_a_killed_slot_shows_in_status_and_live_metrics(backend: LocalBackend):
    backend.set_weights({"blue": 50, "green": 50})
    time.sleep(0.2)  # live metrics count in 0.1 s steps: keep the previous test's traffic out of the window
    since = time.time()
    os.kill(backend.status()["green"].pid, signal.SIGKILL)
    served = ask(backend.router_url, 10)
    assert set(served) == {"clm-assistant/1"}, "the router sent green's share to blue"
    green = backend.live_metrics("green", since)
    assert green.errors == green.requests == 5 and green.error_rate == 1.0
    blue = backend.live_metrics("blue", since)
    assert blue.errors == 0 and blue.requests == 10 and blue.p95_ms is not None
    st = backend.status()["green"]
    assert not st.healthy and st.detail == "process not running"
    with pytest.raises(ServingError, match="green is not healthy"):
        backend.smoke_test("green")
    backend.set_weights({"blue": 100, "green": 0})  # the rollback
    with pytest.raises(ServingError, match="not healthy"):
        backend.set_weights({"blue": 0, "green": 100})
    backend.stop("green")
    assert backend.status()["green"].version is None
