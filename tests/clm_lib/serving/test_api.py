"""The slot server over real HTTP (uvicorn on a free loopback port), with a registered tiny clm version loaded
once for the module. The official ``openai`` client is the main caller; bad requests are sent raw."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from clm_lib.data.readers import read_file
from clm_lib.evaluation.metrics import generate
from clm_lib.serving.api import create_app
from clm_lib.serving.model import load_served_model

from .helpers import running, serving_cfg

PROMPT = "My router keeps dropping the wifi connection every evening"


@pytest.fixture(scope="module")
def slot(serving_registry, tmp_path_factory):
    cfg = serving_cfg(tmp_path_factory.mktemp("api") / "home", serving_registry, feedback_batch_rows="2")
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
    assert fixed["training_example"] is True

    # Two examples make a batch (feedback_batch_rows=2): published to the landing folder for clm_ingest.
    published = sorted(cfg.landing_dir.glob("feedback-blue-*.jsonl"))
    assert len(published) == 1
    result = read_file(published[0])
    rows = result.table.to_pylist()
    assert [(r["task"], r["response"]) for r in rows][1] == ("billing", "billing: refund")
    assert rows[0]["task"] == "routers" and rows[0]["prompt"] == PROMPT
    assert json.loads(rows[1]["metadata"])["corrected"] is True
    ratings = (cfg.home / "serving" / "feedback" / "ratings-blue.jsonl").read_text().splitlines()
    assert [json.loads(line)["rating"] for line in ratings] == [1.0, 0.0, 1.0, 0.0]


def test_metrics_are_labelled_by_version(slot, client):
    client.completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=2)
    httpx.post(f"{slot['url']}/v1/completions", json={"model": "clm-assistant", "prompt": ""})
    text = httpx.get(f"{slot['url']}/metrics").text
    labels = 'slot="blue",version="1"'
    assert f'clm_serving_requests_total{{code="200",endpoint="/v1/completions",{labels}}}' in text
    assert 'clm_serving_errors_total{endpoint="/v1/completions",slot="blue",type="client",version="1"}' in text
    assert f'clm_serving_request_latency_seconds_count{{endpoint="/v1/completions",{labels}}}' in text
    assert 'clm_serving_model_info{model="clm-assistant",slot="blue",version="1"} 1.0' in text
