"""The review queue: a correction sent as feedback waits in quarantine (``pending_review``) and reaches curated
only after an operator accepts it, through the normal ingestion path."""

from __future__ import annotations

import getpass
import json

import httpx
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from clm_lib import audit
from clm_lib.cli import cli
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_landing
from clm_lib.db import session_scope, upgrade
from clm_lib.errors import ClmError
from clm_lib.serving import review
from clm_lib.serving.api import create_app
from clm_lib.serving.model import load_served_model

from .helpers import TINY, running, serving_cfg

PROMPT = "My router keeps dropping the wifi connection every evening"


@pytest.fixture(scope="module")
def model(serving_registry, tmp_path_factory):
    return load_served_model(serving_cfg(tmp_path_factory.mktemp("review") / "home", serving_registry), "1")


@pytest.fixture
def slot(serving_registry, model, tmp_path, monkeypatch):
    home = tmp_path / "home"
    cfg = serving_cfg(home, serving_registry)
    upgrade(cfg.database_url)
    cfg.landing_dir.mkdir(parents=True)  # as `clm init` leaves it
    monkeypatch.setenv("CLM_HOME", str(home))  # the CLI below works on the same home
    monkeypatch.setenv("CLM_CONFIG", str(TINY))
    monkeypatch.delenv("CLM_DATABASE_URL", raising=False)
    with running(create_app(cfg, model, slot="blue")) as url:
        yield {"url": url, "cfg": cfg}


def _correct(url: str, correction: str, task: str = "routers") -> int:
    body = {"model": "clm-assistant", "prompt": PROMPT, "max_tokens": 4, "metadata": {"task": task}}
    rid = httpx.post(f"{url}/v1/completions", json=body, timeout=30).json()["id"]
    sent = httpx.post(f"{url}/v1/feedback", json={"response_id": rid, "rating": 0.0, "correction": correction})
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["training_example"]) == ("pending_review", False)
    return sent.json()["id"]


def _curated_responses(cfg) -> list[str]:
    return lake.read_table(cfg, "curated", columns=["response"])["response"].to_pylist()


def test_a_correction_reaches_curated_only_when_accepted(slot):
    cfg = slot["cfg"]
    fix = "Restart the router, then update its firmware from the admin page"
    fid = _correct(slot["url"], fix)

    [item] = review.pending(cfg)
    assert (item.id, item.correction, item.owner, item.task) == (fid, fix, "anonymous", "routers")
    quarantined = lake.read_table(cfg, "quarantine", where=pc.field("reason") == "pending_review").to_pylist()
    assert [(q["response"], q["id"]) for q in quarantined] == [(fix, item.record_id)]
    assert json.loads(quarantined[0]["metadata"])["feedback_id"] == fid
    assert list(cfg.landing_dir.glob("*.jsonl")) == [], "nothing waits in the landing folder"
    ingest_landing(cfg)
    assert fix not in _curated_responses(cfg)

    accepted = CliRunner().invoke(cli, ["feedback", "accept", str(fid), "--reason", "checked with the desk"])
    assert accepted.exit_code == 0, accepted.output
    assert review.pending(cfg) == []
    [batch] = ingest_landing(cfg)
    assert batch.status == "committed" and batch.rows_curated == 1
    assert batch.rows_in == batch.rows_curated + batch.rows_quarantined + batch.rows_duplicate
    curated = lake.read_table(cfg, "curated", where=pc.field("response") == fix).to_pylist()
    assert [(c["id"], c["task"], c["prompt"]) for c in curated] == [(item.record_id, "routers", PROMPT)]
    assert json.loads(curated[0]["metadata"])["owner"] == "anonymous"
    with session_scope(cfg.database_url) as s:
        [entry] = audit.recent(s, action="feedback.accept")
        assert entry.actor == f"cli:{getpass.getuser()}" and entry.reason == "checked with the desk"


def test_a_rejected_correction_never_reaches_training(slot):
    cfg = slot["cfg"]
    spam = "Buy cheap watches at example dot com, best prices"
    fid = _correct(slot["url"], spam)
    no_reason = CliRunner().invoke(cli, ["feedback", "reject", str(fid)])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    rejected = CliRunner().invoke(cli, ["feedback", "reject", str(fid), "--reason", "spam"])
    assert rejected.exit_code == 0, rejected.output
    [item] = review.items(cfg, [fid])
    assert (item.status, item.review_reason) == ("rejected", "spam")
    late = CliRunner().invoke(cli, ["feedback", "accept", str(fid)])
    assert late.exit_code == 2 and f"{fid}: rejected" in late.output
    ingest_landing(cfg)
    assert spam not in _curated_responses(cfg)


def test_accept_is_all_or_nothing(slot):
    cfg = slot["cfg"]
    first = _correct(slot["url"], "Power-cycle the modem before the router")
    with pytest.raises(ClmError, match="99: no such feedback"):
        review.accept(cfg, [first, 99], actor="test")
    assert [i.id for i in review.pending(cfg)] == [first]
    listed = CliRunner().invoke(cli, ["feedback", "review"])
    assert f"#{first}" in listed.output and "Power-cycle the modem" in listed.output
    assert list(cfg.landing_dir.glob("*review*")) == []


def test_an_accepted_correction_reaches_an_s3_landing_location_and_curated(slot, s3_endpoint, monkeypatch):
    from tests.s3 import use_s3

    cfg = slot["cfg"]
    fid = _correct(slot["url"], "Hand the case to the network team")
    with use_s3(monkeypatch, s3_endpoint, "review-landing") as s3:
        cfg.paths.landing = "s3://review-landing/in"
        accepted, where = review.accept(cfg, [fid], actor="test")
        assert [i.id for i in accepted] == [fid] and where.startswith("s3://review-landing/in/feedback-review-")
        assert not list((cfg.home / "landing-staging").iterdir())  # published, nothing left behind
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="review-landing")["Contents"]]
        assert keys == [where.removeprefix("s3://review-landing/")]
        ingest_landing(cfg)
        assert "Hand the case to the network team" in _curated_responses(cfg)
