"""clm's own traffic to a slot that requires API keys (as every Kubernetes pod does: it binds 0.0.0.0): the smoke
test authenticates with the key in ``CLM_PROBE_API_KEY``, and says where the key comes from when it is missing
or refused. A real slot over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from clm_lib.db import upgrade
from clm_lib.errors import ServingError
from clm_lib.serving.api import create_app
from clm_lib.serving.backends.probe import PROBE_KEY_ENV, PROBE_OWNER, probe_headers, smoke
from clm_lib.serving.keys import create_key, revoke_key
from clm_lib.serving.model import load_served_model

from ..helpers import running, serving_cfg


@pytest.fixture(scope="module")
def keyed_slot(serving_registry, tmp_path_factory):
    cfg = serving_cfg(tmp_path_factory.mktemp("probe") / "home", serving_registry, api_key_cache_s="0.2")
    upgrade(cfg.database_url)
    with running(create_app(cfg, load_served_model(cfg, "1"), slot="green", host="0.0.0.0")) as url:
        yield {"url": url, "cfg": cfg}


def _smoke(url: str) -> None:
    with httpx.Client(trust_env=False) as http:
        smoke(http, url, "clm-assistant", "1", "green")


def test_without_a_probe_key_the_smoke_test_says_how_to_make_one(keyed_slot, monkeypatch):
    monkeypatch.delenv(PROBE_KEY_ENV, raising=False)
    with pytest.raises(ServingError, match="HTTP 401") as refused:
        _smoke(keyed_slot["url"])
    assert f"{PROBE_KEY_ENV} is not set" in str(refused.value)
    assert f"clm keys create --owner {PROBE_OWNER} --scope infer" in str(refused.value)


def test_the_probe_key_from_the_environment_passes_until_it_is_revoked(keyed_slot, monkeypatch):
    db = keyed_slot["cfg"].database_url
    info, key = create_key(db, owner=PROBE_OWNER, scopes="infer", actor="cli:test")
    monkeypatch.setenv(PROBE_KEY_ENV, key)

    _smoke(keyed_slot["url"])

    revoke_key(db, info.id, actor="cli:test", reason="rotated")
    time.sleep(0.25)
    with pytest.raises(ServingError, match=f"HTTP 401: the API key is unknown or revoked; the key in {PROBE_KEY_ENV}"):
        _smoke(keyed_slot["url"])


def test_a_probe_key_without_the_infer_scope_is_refused_with_the_reason(keyed_slot, monkeypatch):
    _, key = create_key(keyed_slot["cfg"].database_url, owner=PROBE_OWNER, scopes="feedback", actor="cli:test")
    monkeypatch.setenv(PROBE_KEY_ENV, key)
    with pytest.raises(ServingError, match=r"HTTP 403: .*lacks the 'infer' scope.*was refused"):
        _smoke(keyed_slot["url"])


@pytest.mark.parametrize("value", ["not-a-key", "clm_abc def", "clm_\u00e9"])
def test_a_value_that_cannot_be_a_key_is_an_error_before_any_request(value):
    with pytest.raises(ServingError, match=f"{PROBE_KEY_ENV} does not hold a serving API key"):
        probe_headers({PROBE_KEY_ENV: value})
    assert probe_headers({}) == {} and probe_headers({PROBE_KEY_ENV: "  "}) == {}

