"""The slot server over real HTTP (uvicorn on a free loopback port), with a registered tiny clm version loaded
once for the module. The official ``openai`` client is the main caller; bad requests are sent raw."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest

from clm_lib.data.readers import read_file
from clm_lib.db import upgrade
from clm_lib.modeling.generate import generate
from clm_lib.serving.api import create_app
from clm_lib.serving.model import load_served_model

from .helpers import running, serving_cfg

PROMPT = "My router keeps dropping the wifi connection every evening"


@pytest.fixture(scope="module")
def slot(serving_registry, tmp_path_factory):
    cfg = serving_cfg(tmp_path_factory.mktemp("api") / "home", serving_registry, feedback_batch_rows="2")
    upgrade(cfg.database_url)
    model = load_served_model(cfg, "1")
    with running(create_app(cfg, model, slot="blue")) as url:
        yield {"url": url, "cfg": cfg, "model": model}


@pytest.fixture
def client(slot):
    return openai.OpenAI(base_url=f"{slot['url']}/v1", api_key="unused", max_retries=0)


def test_openai_completion_is_what_evaluation_scored(slot, client):
    r = client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=8, temperature=0)
    model = slot["model"]
    assert r.choices[0].text == generate(model.model, model.tokenizer, [PROMPT], max_new_tokens=8)[0]
    assert r.model == "clm-assistant/1" and r.system_fingerprint == "clm-assistant/1"
    assert r.id.startswith("cmpl-blue-") and r.object == "text_completion"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_openai_chat_answers_the_last_user_message(client):
    chat = client.chat.completions.create(
        model="clm-assistant/1",
        messages=[
            {"role": "system", "content": "You triage support requests."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": PROMPT},
        ],
        max_completion_tokens=8,
    )
    plain = client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=8)
    assert chat.object == "chat.completion" and chat.id.startswith("chatcmpl-blue-")
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == plain.choices[0].text


def test_stop_sequence_cuts_the_answer(client):
    full = client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=12).choices[0]
    assert len(full.text) > 2, "the tiny model should say something"
    stop = full.text[2:4]
    cut = client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=12, stop=[stop]).choices[0]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"


def test_models_and_health(slot, client):
    assert {m.id for m in client.models.list()} == {"clm-assistant", "clm-assistant/1"}
    health = httpx.get(f"{slot['url']}/healthz").json()
    assert (health["ready"], health["version"], health["slot"]) == (True, "1", "blue")


def test_openai_client_raises_with_clms_message(client):
    with pytest.raises(openai.BadRequestError, match="prompt must not be empty"):
        client.completions.create(model="clm-assistant", prompt="   ")
    with pytest.raises(openai.BadRequestError, match="max_tokens must be at most 256"):
        client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=100_000)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/completions", b'{"model": "clm-assistant", "prompt": ', 400, "not valid JSON"),
        ("/v1/completions", b"[1, 2]", 400, "must be a JSON object"),
        ("/v1/completions", {"model": "clm-assistant"}, 400, "prompt: Field required"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": ""}, 400, "prompt must not be empty"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "max_tokens": 10**6}, 400, "at most 256"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "max_tokens": 200}, 400, "context length"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x" * 9000}, 400, "the limit is 8000"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "n": 3}, 400, "only n=1"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "stream": True}, 400, "streaming"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": ["a", "b"]}, 400, "one prompt per request"),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "x", "temperature": 5}, 400, "temperature"),
        ("/v1/completions", {"model": "llama", "prompt": "x"}, 404, "'llama' does not exist"),
        ("/v1/chat/completions", {"model": "clm-assistant", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": "clm-assistant", "messages": [{"role": "user"}]}, 400, "empty"),
        ("/v1/feedback", {"response_id": "cmpl-blue-nope", "rating": 1}, 404, "no response 'cmpl-blue-nope'"),
        ("/v1/embeddings", {"model": "clm-assistant", "input": "x"}, 404, "no such endpoint"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(slot, path, body, status, message):
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
    resp = httpx.post(slot["url"] + path, headers={"content-type": "application/json"}, **kwargs)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"


def test_feedback_becomes_landing_data_and_is_logged(slot, client):
    cfg = slot["cfg"]

    def answer(task: str | None) -> str:
        meta = {"metadata": {"task": task}} if task else {}
        return client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=6, extra_body=meta).id

    def rate(**body) -> httpx.Response:
        return httpx.post(f"{slot['url']}/v1/feedback", json=body)

    good = rate(response_id=answer("routers"), rating=1.0).json()
    assert (good["training_example"], good["model_version"]) == (True, "1")
    bad = rate(response_id=answer("routers"), rating=0.0).json()
    assert bad["training_example"] is False and "below" in bad["note"]
    untasked = rate(response_id=answer(None), rating=1.0).json()
    assert untasked["training_example"] is False and "no task" in untasked["note"]
    assert rate(response_id=answer(None), rating=1.0, task="toasters").status_code == 400
    assert rate(response_id=answer(None), rating=2.0).status_code == 400
    fixed = rate(response_id=answer(None), rating=0.0, task="billing", correction="billing: refund").json()
    assert (fixed["training_example"], fixed["status"]) == (False, "pending_review"), "a correction waits for review"
    assert rate(response_id=answer("billing"), rating=0.9).json()["training_example"] is True

    # Two examples make a batch (feedback_batch_rows=2): published to the landing folder for clm_ingest.
    published = sorted(cfg.landing_dir.glob("feedback-blue-*.jsonl"))
    assert len(published) == 1
    rows = read_file(published[0]).table.to_pylist()
    assert [(r["task"], r["prompt"]) for r in rows] == [("routers", PROMPT), ("billing", PROMPT)]
    assert {json.loads(r["metadata"])["corrected"] for r in rows} == {False}
    assert "billing: refund" not in published[0].read_text()
    ratings = (cfg.home / "serving" / "feedback" / "ratings-blue.jsonl").read_text().splitlines()
    assert [json.loads(line)["rating"] for line in ratings] == [1.0, 0.0, 1.0, 0.0, 0.9]
    assert {json.loads(line)["owner"] for line in ratings} == {"anonymous"}


def test_metrics_are_labelled_by_version(slot, client):
    client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=2)
    httpx.post(f"{slot['url']}/v1/completions", json={"model": "clm-assistant", "prompt": ""})
    text = httpx.get(f"{slot['url']}/metrics").text
    labels = 'slot="blue",version="1"'
    assert f'clm_serving_requests_total{{code="200",endpoint="/v1/completions",{labels}}}' in text
    assert 'clm_serving_errors_total{endpoint="/v1/completions",slot="blue",type="client",version="1"}' in text
    assert f'clm_serving_request_latency_seconds_count{{endpoint="/v1/completions",{labels}}}' in text
    assert 'clm_serving_model_info{model="clm-assistant",slot="blue",version="1"} 1.0' in text


JSON = {"content-type": "application/json"}


def _raw(url: str, body: dict, **headers: str) -> httpx.Response:
    # json.dumps writes a lone surrogate as the escape "\ud800", exactly what a hostile client can send.
    return httpx.post(url, content=json.dumps(body), headers=JSON | headers, timeout=30)


SURROGATE_BODIES = [
    ("/v1/completions", {"model": "clm-assistant", "prompt": "\ud800"}),
    ("/v1/completions", {"model": "clm-assistant", "prompt": ["my router \udfff drops"]}),
    ("/v1/completions", {"model": "clm-assistant", "prompt": PROMPT, "metadata": {"task": "\ud800"}}),
    ("/v1/chat/completions", {"model": "clm-assistant", "messages": [{"role": "user", "content": "\ud800"}]}),
    (
        "/v1/chat/completions",
        {"model": "clm-assistant", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}]},
    ),
]


@pytest.mark.parametrize(("path", "body"), SURROGATE_BODIES)
def test_a_lone_surrogate_is_a_400_that_says_so(slot, path, body):
    resp = _raw(slot["url"] + path, body)
    assert resp.status_code == 400
    assert "lone surrogate" in resp.json()["error"]["message"]


def test_bad_input_through_the_router_never_counts_against_the_slot(slot):
    from clm_lib.serving.router import Router

    router = Router({"blue": slot["url"]}, {"blue": 100, "green": 0}, token="t", timeout_s=30, window_s=600)
    with running(router) as url:
        since = time.time()
        for path, body in SURROGATE_BODIES:
            assert _raw(url + path, body).status_code == 400
        hot = {"model": "clm-assistant", "prompt": PROMPT, "temperature": 0.7, "seed": 2**64}
        assert _raw(url + "/v1/completions", hot).status_code == 400
        ok = _raw(url + "/v1/completions", {"model": "clm-assistant", "prompt": PROMPT, "max_tokens": 2})
        assert ok.status_code == 200
        stats = httpx.get(f"{url}/router/stats", params={"slot": "blue", "since": since}).json()
    assert (stats["requests"], stats["errors"]) == (1, 0), "client errors neither count against nor for a slot"


@pytest.mark.parametrize("seed", [-1, 2**31, 2**64])
def test_seed_out_of_range_is_a_400(slot, seed):
    body = {"model": "clm-assistant", "prompt": PROMPT, "temperature": 0.7, "seed": seed, "max_tokens": 2}
    resp = _raw(slot["url"] + "/v1/completions", body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "seed"


def test_a_seeded_sample_repeats(slot):
    body = {"model": "clm-assistant", "prompt": PROMPT, "temperature": 1.0, "seed": 2**31 - 1, "max_tokens": 6}
    first, second = (_raw(slot["url"] + "/v1/completions", body) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["choices"][0]["text"] == second.json()["choices"][0]["text"]


@pytest.mark.parametrize("route", ["slot", "router"])
def test_a_body_over_one_mib_is_a_413(slot, route):
    from clm_lib.serving.router import Router

    body = json.dumps({"model": "clm-assistant", "prompt": "x" * (2 << 20)}).encode()

    def chunked():  # no Content-Length: the limit must hold while reading
        for i in range(0, len(body), 1 << 16):
            yield body[i : i + (1 << 16)]

    router = Router({"blue": slot["url"]}, {"blue": 100, "green": 0}, token="t", timeout_s=30, window_s=600)
    with running(router) as router_url:
        url = (slot["url"] if route == "slot" else router_url) + "/v1/completions"
        for content in (body, chunked()):
            resp = httpx.post(url, content=content, headers=JSON, timeout=30)
            assert resp.status_code == 413
            assert "larger than 1048576 bytes" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/completions", {"model": "m" * 900_000, "prompt": PROMPT}, 400),
        ("/v1/chat/completions", {"model": "clm-assistant", "messages": [{"role": "r" * 900_000}]}, 400),
        ("/v1/completions", {"model": "clm-assistant", "prompt": "p" * 900_000}, 400),
        ("/v1/feedback", {"response_id": "cmpl-blue-" + "z" * 900_000, "rating": 1}, 400),
        ("/v1/completions" + "x" * 50_000, {"model": "clm-assistant"}, 404),
    ],
)
def test_error_bodies_echo_only_a_short_excerpt(slot, path, body, status):
    resp = _raw(slot["url"] + path, body)
    assert resp.status_code == status
    assert len(resp.content) < 1000
    assert resp.json()["error"]["message"]


def test_one_feedback_per_answer_and_length_caps(slot, client):
    url = f"{slot['url']}/v1/feedback"
    rid = client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=2).id
    too_long = httpx.post(url, json={"response_id": rid, "rating": 0, "task": "routers", "correction": "c" * 4001})
    assert too_long.status_code == 400 and "the limit is 4000" in too_long.json()["error"]["message"]
    chatty = httpx.post(url, json={"response_id": rid, "rating": 0, "comment": "c" * 1001})
    assert chatty.status_code == 400 and "the limit is 1000" in chatty.json()["error"]["message"]
    assert httpx.post(url, json={"response_id": rid, "rating": 1.0}).status_code == 200
    again = httpx.post(url, json={"response_id": rid, "rating": 0.0, "task": "routers", "correction": "other"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_exists"


class Gated:
    """The real model, made to wait for a signal before answering, so that requests pile up in the slot."""

    def __init__(self, model):
        self.model, self.name, self.version = model, model.name, model.version
        self.gate = threading.Event()

    def complete(self, prompt, **kwargs):
        self.gate.wait(30)
        return self.model.complete(prompt, **kwargs)


def test_a_full_generation_queue_answers_429(slot, serving_registry, tmp_path):
    cfg = serving_cfg(tmp_path / "home", serving_registry, max_queued="2")
    gated = Gated(slot["model"])
    body = {"model": "clm-assistant", "prompt": PROMPT, "max_tokens": 2}

    async def burst(url: str):
        async with httpx.AsyncClient(timeout=30) as c:
            held = [asyncio.create_task(c.post(f"{url}/v1/completions", json=body)) for _ in range(2)]
            deadline = time.monotonic() + 10
            while 'clm_serving_in_flight{slot="green",version="1"} 2.0' not in (await c.get(f"{url}/metrics")).text:
                assert time.monotonic() < deadline, "the two requests never arrived"
                await asyncio.sleep(0.02)
            refused = await c.post(f"{url}/v1/completions", json=body)
            gated.gate.set()
            return refused, await asyncio.gather(*held)

    with running(create_app(cfg, gated, slot="green")) as url:
        refused, held = asyncio.run(burst(url))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]["message"]
        assert [r.status_code for r in held] == [200, 200]
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200, "the queue drained"
