"""API keys: stored hashed, scoped, revocable; a slot that requires them refuses anonymous and out-of-scope calls,
and a revoked key stops working within ``serving.api_key_cache_s``."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from clm_lib import audit
from clm_lib.cli import cli
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import ServingApiKey, ServingFeedback
from clm_lib.errors import ClmError
from clm_lib.serving.api import create_app
from clm_lib.serving.keys import KeyCache, create_key, list_keys, parse_scopes, revoke_key
from clm_lib.serving.model import load_served_model

from .helpers import TINY, running, serving_cfg

PROMPT = "My router keeps dropping the wifi connection every evening"


def test_keys_are_stored_hashed_scoped_and_revocable(db_url, monkeypatch):
    info, secret = create_key(db_url, owner="alice", scopes="feedback,infer", actor="cli:root")
    assert secret.startswith(f"clm_{info.prefix}_") and len(secret) == 56
    assert info.scopes == ("infer", "feedback") and info.active
    with session_scope(db_url) as s:
        stored = s.scalars(select(ServingApiKey)).one()
        assert secret not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    cache = KeyCache(db_url, ttl_s=0.3)
    assert cache.lookup(secret).owner == "alice"
    assert cache.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None, "same prefix, wrong secret"
    assert cache.lookup("clm_00000000_" + "x" * 43) is None and cache.lookup("sk-anything") is None

    revoke_key(db_url, info.id, actor="cli:root", reason="left the team")
    assert cache.lookup(secret) is not None, "within the cache bound the slot may still accept it"
    time.sleep(0.35)
    assert cache.lookup(secret) is None, "after the bound it is refused"
    with pytest.raises(ClmError, match="already revoked"):
        revoke_key(db_url, info.id, actor="cli:root")
    with pytest.raises(ClmError, match="no API key with id 99"):
        revoke_key(db_url, 99, actor="cli:root")
    assert [k.active for k in list_keys(db_url)] == [False] and list_keys(db_url, include_revoked=False) == []
    with session_scope(db_url) as s:
        assert [e.action for e in audit.recent(s)] == ["serving_key.revoke", "serving_key.create"]


@pytest.mark.parametrize("text", ["", "admin", "infer,everything"])
def test_unknown_scopes_are_refused(text):
    with pytest.raises(ClmError, match="subset of infer, feedback"):
        parse_scopes(text)


@pytest.fixture(scope="module")
def keyed(serving_registry, tmp_path_factory):
    """A slot that requires keys (as one bound beyond loopback does by default), with a short cache bound."""
    cfg = serving_cfg(tmp_path_factory.mktemp("keys") / "home", serving_registry, api_key_cache_s="0.3")
    upgrade(cfg.database_url)
    model = load_served_model(cfg, "1")
    with running(create_app(cfg, model, slot="blue", host="0.0.0.0")) as url:
        yield {"url": url, "cfg": cfg}


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _ask(url: str, key: str) -> str:
    return _client(url, key).completions.create(model="clm-assistant", prompt=PROMPT, max_tokens=2).id


def test_a_slot_beyond_loopback_requires_a_key(keyed):
    url = keyed["url"]
    with pytest.raises(openai.AuthenticationError, match="an API key is required"):
        _ask(url, "unused")
    anonymous = httpx.post(f"{url}/v1/feedback", json={"response_id": "cmpl-blue-x", "rating": 1})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/healthz").status_code == 200, "probes need no key"
    assert httpx.get(f"{url}/metrics").status_code == 200


def test_scopes_and_owner(keyed):
    url, db = keyed["url"], keyed["cfg"].database_url
    _, infer_only = create_key(db, owner="app-frontend", scopes="infer", actor="test")
    _, feedback_only = create_key(db, owner="labeller", scopes="feedback", actor="test")
    _, both = create_key(db, owner="support-desk", scopes="infer,feedback", actor="test")
    rid = _ask(url, infer_only)
    refused = httpx.post(f"{url}/v1/feedback", json={"response_id": rid, "rating": 1},
                         headers={"Authorization": f"Bearer {infer_only}"})  # fmt: skip
    assert refused.status_code == 403 and "lacks the 'feedback' scope" in refused.json()["error"]["message"]
    with pytest.raises(openai.PermissionDeniedError, match="lacks the 'infer' scope"):
        _ask(url, feedback_only)
    rid = _ask(url, both)
    sent = httpx.post(f"{url}/v1/feedback", json={"response_id": rid, "rating": 0.5},
                      headers={"Authorization": f"Bearer {both}"})  # fmt: skip
    assert sent.status_code == 200
    with session_scope(db) as s:
        row = s.scalars(select(ServingFeedback).where(ServingFeedback.response_id == rid)).one()
        assert row.owner == "support-desk" and row.api_key_id is not None


def test_a_revoked_key_stops_working_within_the_cache_bound(keyed):
    url, db = keyed["url"], keyed["cfg"].database_url
    info, key = create_key(db, owner="contractor", scopes="infer", actor="test")
    assert _ask(url, key).startswith("cmpl-blue-")
    revoke_key(db, info.id, actor="test")
    time.sleep(0.35)
    with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
        _ask(url, key)


def test_keys_cli(tmp_path, monkeypatch):
    env = {"CLM_CONFIG": str(TINY), "CLM_HOME": str(tmp_path / "home")}
    monkeypatch.delenv("CLM_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, list(args), env=env)

    not_ready = run("keys", "list")
    assert not_ready.exit_code == 2 and "run `clm init` first" in not_ready.output
    assert "Traceback" not in not_ready.output
    upgrade(f"sqlite:///{tmp_path / 'home' / 'clm.db'}")
    made = run("keys", "create", "--owner", "alice", "--scope", "infer,feedback")
    assert made.exit_code == 0, made.output
    secret = next(line for line in made.output.splitlines() if line.startswith("clm_"))
    listed = run("keys", "list")
    assert secret[:13] in listed.output and secret not in listed.output and "active" in listed.output
    assert run("keys", "revoke", "1", "--reason", "rotated").exit_code == 0
    assert "revoked" in run("keys", "list").output
    again = run("keys", "revoke", "1")
    assert again.exit_code == 2 and "already revoked" in again.output
    bad = run("keys", "create", "--owner", "bob", "--scope", "root")
    assert bad.exit_code == 2 and "subset of infer, feedback" in bad.output
