"""Fuzzing the slot server's API with schemathesis: cases generated from its own OpenAPI schema (valid and
invalid ones), sent over real HTTP to a slot that requires API keys, as each kind of caller. Whatever arrives,
the answer is never a 5xx. Bounded and derandomized, so a run takes seconds and repeats exactly.

The inputs that once answered 500 are pinned below as plain regression tests."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from clm_lib.db import upgrade
from clm_lib.serving.api import create_app
from clm_lib.serving.keys import create_key, revoke_key
from clm_lib.serving.model import load_served_model

from .helpers import running, serving_cfg

PROMPT = "My router keeps dropping the wifi connection every evening"
ROLES = ("anonymous", "infer", "feedback", "revoked")
EXAMPLES = 150
"""Cases per role (positive and negative ones mixed): ~6 s per role on 2 cores with the tiny model."""
CASES: Counter[str] = Counter()
NO_SHRINK = (Phase.explicit, Phase.generate)
"""A failure is reported as found: shrinking it could take minutes, past the run's time bound."""
"""How many cases ran per role (docs/reliability.md quotes these)."""


@pytest.fixture(scope="module")
def fuzzed(serving_registry, tmp_path_factory):
    """A slot bound as beyond loopback (keys required), short answers; a key per scope, a revoked one, and a few
    real response ids so that feedback cases reach past the 404."""
    cfg = serving_cfg(tmp_path_factory.mktemp("fuzz") / "home", serving_registry,
                      max_tokens_limit="6", default_max_tokens="3", feedback_batch_rows="5")  # fmt: skip
    upgrade(cfg.database_url)
    db = cfg.database_url
    keys = {"anonymous": None}
    keys["infer"] = create_key(db, owner="fuzz-infer", scopes="infer", actor="test")[1]
    keys["feedback"] = create_key(db, owner="fuzz-feedback", scopes="feedback", actor="test")[1]
    revoked, keys["revoked"] = create_key(db, owner="fuzz-revoked", scopes="infer,feedback", actor="test")
    revoke_key(db, revoked.id, actor="test")
    app = create_app(cfg, load_served_model(cfg, "1"), slot="blue", host="0.0.0.0")
    with running(app) as url:
        auth = {"Authorization": f"Bearer {keys['infer']}"}
        body = {"model": "clm-assistant", "prompt": PROMPT, "max_tokens": 2}
        ids = [httpx.post(f"{url}/v1/completions", json=body, headers=auth).json()["id"] for _ in range(3)]
        yield {"url": url, "keys": keys, "schema": schemathesis.openapi.from_dict(app.openapi()), "ids": ids}


def _steer(case, data, ids: list[str]) -> None:
    """Half the generated bodies name the served model or a real response: random ones only reach the 404."""
    if not isinstance(case.body, dict) or not data.draw(st.booleans()):
        return
    if case.path == "/v1/feedback":
        case.body["response_id"] = data.draw(st.sampled_from(ids))
    elif case.path != "/v1/models":
        case.body["model"] = "clm-assistant"


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_no_5xx_for_any_caller(fuzzed, role):
    schema = fuzzed["schema"]
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE) | schema.as_strategy(
        generation_mode=schemathesis.GenerationMode.NEGATIVE
    )
    key = fuzzed["keys"][role]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    session = requests.Session()
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy, data=st.data())
    def check(case, data):
        _steer(case, data, fuzzed["ids"])
        response = case.call(base_url=fuzzed["url"], session=session, headers=headers, timeout=60)
        CASES[role] += 1
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    check()
    print(f"serving API as {role}: {CASES[role]} cases, statuses {dict(sorted(statuses.items()))}")
    assert CASES[role] >= EXAMPLES
    assert not [s for s in statuses if s >= 500], statuses
    if role in ("anonymous", "revoked"):
        # Nothing but health and metrics answers without a valid key; /v1/* is refused before the body is read.
        assert set(statuses) <= {200, 401, 404, 405}, statuses
    else:
        assert 200 in statuses and (403 in statuses), f"the fuzzer should reach past the key check: {statuses}"


def _post(url: str, path: str, body: dict, key: str) -> httpx.Response:
    # json.dumps writes a lone surrogate as the escape "\ud800", exactly what a hostile client can send.
    return httpx.post(f"{url}{path}", content=json.dumps(body), headers={"Authorization": f"Bearer {key}",
                                                                        "Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "clm-assistant", "prompt": "\ud800"}),
        ("/v1/completions", {"model": "clm-assistant", "prompt": ["ok", "a\udfff"]}),
        ("/v1/chat/completions", {"model": "clm-assistant", "messages": [{"role": "user", "content": "\ud800"}]}),
    ],
)
def test_regression_a_lone_surrogate_was_a_500(fuzzed, path, body):
    response = _post(fuzzed["url"], path, body, fuzzed["keys"]["infer"])

    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["error"]["message"]


def test_regression_a_lone_surrogate_in_the_model_name(fuzzed):
    body = {"model": "clm-assistant\ud800", "messages": [{"role": "user", "content": "hi"}]}
    response = _post(fuzzed["url"], "/v1/chat/completions", body, fuzzed["keys"]["infer"])

    assert response.status_code == 400 and "unicode" in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "model"


def test_regression_a_lone_surrogate_in_feedback(fuzzed):
    body = {"response_id": fuzzed["ids"][0], "rating": 0.5, "correction": "fixed\ud800"}
    response = _post(fuzzed["url"], "/v1/feedback", body, fuzzed["keys"]["feedback"])

    assert response.status_code == 400 and "lone surrogate" in response.json()["error"]["message"]
