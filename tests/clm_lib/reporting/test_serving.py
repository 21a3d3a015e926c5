"""The serving screen's data: slots, aliases, the deployment with its bake verdicts, history, rollback targets.

Deployments are made by the real rollout and rollback on the in-memory serving backend (a test double for the
slots, tests/clm_lib/deploy/fakes.py), with a real MLflow registry and clm's database on SQLite and PostgreSQL.
The tolerant states (nothing installed, serving never started, router down, a hung backend) use the real
``local`` backend where it can show them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from clm_lib.config import load_config
from clm_lib.db import upgrade
from clm_lib.deploy.plan import Record, plan_rollback
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.deploy.state import rollback_option
from clm_lib.reporting import build_serving
from tests.clm_lib.deploy.fakes import FakeBackend

from .serving_history import FAST_DEPLOY, promote_two_then_reject_one, serving_ports_env

REPO = Path(__file__).resolve().parents[3]


def _cfg(home: Path, **env: str):
    return load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(home), **serving_ports_env(), **env})


@pytest.fixture
def cfg_on(tmp_path, mlflow_uri, clean_env):
    def make(db_url: str, **env: str):
        return _cfg(tmp_path / "home", CLM_DATABASE_URL=db_url, MLFLOW_TRACKING_URI=mlflow_uri, **FAST_DEPLOY, **env)

    return make


def test_fresh_install_explains_itself_and_creates_nothing(tmp_path, clean_env):
    home = tmp_path / "home"

    page = build_serving(_cfg(home))

    assert "clm init" in page.database_problem
    assert page.registry.status == "empty" and page.aliases == {"champion": None, "previous": None, "challenger": None}
    assert page.serving.status == "not_started" and "clm slots deploy" in page.serving.message
    assert [s.role for s in page.serving.slots] == ["empty", "empty"]
    assert page.current is None and page.history == []
    assert not page.rollback.possible and "no version is champion" in page.rollback.why_not
    assert not home.exists(), "reading the page must not create clm's home, its database or serving state"


def test_a_canary_history_with_an_automatic_rollback(db_url, cfg_on, register_version):
    cfg = cfg_on(db_url)
    h = promote_two_then_reject_one(cfg, register_version)

    page = build_serving(cfg, backend=h.backend)

    assert page.database_problem is None and page.registry.status == "ok"
    assert page.aliases == {"champion": h.v2, "previous": h.v1, "challenger": h.v3}  # rejected, still a candidate
    slots = {s.slot: s for s in page.serving.slots}
    live = next(s for s in slots.values() if s.weight == 100)
    idle = next(s for s in slots.values() if s.weight == 0)
    assert (live.version, live.role, live.healthy, live.aliases) == (h.v2, "live", True, ["champion"])
    assert (idle.version, idle.role, idle.aliases) == (h.v3, "idle", ["challenger"])  # out of traffic
    # The last deployment: v3 rolled back by the golden set at its first canary step.
    d = page.current
    assert (d.kind, d.version, d.from_version, d.status, d.active) == ("promotion", h.v3, h.v2, "rolled_back", False)
    assert d.outcome.startswith("rolled back automatically: golden-set exact match 0.0, floor 65.0")
    assert [s.step for s in d.steps] == ["gate", "deploy", "smoke_test", "golden_set", "traffic", "rollback"]
    traffic, breach = d.steps[-2], d.steps[-1]
    assert traffic.weights == {live.slot: 90, idle.slot: 10}
    assert (breach.status, breach.percent) == ("breach", 10)
    assert {v.rule: v.state for v in breach.verdicts} == {
        "health": "ok", "error_rate": "ok", "p95_latency": "ok", "golden_set": "breach",
    }  # fmt: skip
    assert breach.weights == {live.slot: 100, idle.slot: 0}
    # History, newest first; v2's bakes had 3 requests per window: error rate and latency "not judged".
    assert [(x.kind, x.version, x.status) for x in page.history] == [
        ("promotion", h.v3, "rolled_back"), ("promotion", h.v2, "promoted"), ("promotion", h.v1, "promoted"),
    ]  # fmt: skip
    assert all(x.actor == "airflow:clm_promotion" and x.reason == "gate passed" for x in page.history)
    assert page.history[1].steps == []  # only the deployment the page details carries its steps
    assert page.rollback.possible
    assert [t.version for t in page.rollback.targets] == [None]
    assert page.rollback.targets[0].label == f"v{h.v1} (previous champion)"


def test_bake_verdicts_that_could_not_be_judged_say_so(sqlite_url, cfg_on, register_version):
    cfg = cfg_on(sqlite_url)
    h = promote_two_then_reject_one(cfg, register_version)

    page = build_serving(cfg, backend=h.backend, focus=2)  # v2's promotion

    bakes = [s for s in page.focus.steps if s.step == "bake"]
    assert [b.percent for b in bakes] == [10, 50, 100]
    assert all({v.rule: v.state for v in b.verdicts} == {"health": "ok", "error_rate": "not judged",
                                                          "p95_latency": "not judged"} for b in bakes)  # fmt: skip
    assert "fewer than 10" in bakes[0].verdicts[1].message


def test_a_manual_rollback_shows_who_why_and_the_switch_time(db_url, cfg_on, register_version):
    cfg = cfg_on(db_url)
    h = promote_two_then_reject_one(cfg, register_version)
    result = rollback(cfg, actor="airflow:otto", reason="billing answers got worse", backend=h.backend)

    page = build_serving(cfg, backend=h.backend, focus=result.deployment_id)

    f = page.focus
    assert (f.kind, f.from_version, f.version, f.status) == ("rollback", h.v2, h.v1, "completed")
    assert f.actor == "airflow:otto"
    assert f.reason == "billing answers got worse"
    # v3's canary took the slot that kept v1 warm, so v1 was loaded again: a cold switch, and the page says so.
    assert f.warm is result.warm is False and f.switch_ms == pytest.approx(result.switch_ms)
    assert page.history[0].id == f.id and page.history[0].switch_ms == pytest.approx(result.switch_ms)
    assert [s.step for s in page.current.steps] == ["switch", "aliases"]
    assert page.aliases["champion"] == h.v1 and page.aliases["previous"] is None
    # v2 was just rolled back: no default target; it may still be named, and says what happened to it.
    assert page.rollback.possible and page.rollback.why_not.startswith("No previous version to roll back to: every")
    [target] = page.rollback.targets
    assert target.version == h.v2 and target.label.endswith(f"; rolled back by rollback #{result.deployment_id})")
    assert page.marks == {h.v2: f"rolled back by rollback #{result.deployment_id}",
                          h.v3: "rejected by the canary (promotion #3)"}  # fmt: skip
    assert page.history[0].marks == {h.v2: f"rolled back by rollback #{result.deployment_id}"}


def test_a_promotion_under_way_is_the_current_deployment_and_the_rollback_ends_it(sqlite_url, cfg_on, register_version):
    from clm_lib.deploy.rollout import deploy, start

    cfg = cfg_on(sqlite_url)
    be = FakeBackend()
    v1 = register_version(cfg)
    rollout(cfg, backend=be, golden=None)
    v2 = register_version(cfg)
    dep = start(cfg, actor="airflow:clm_promotion")
    deploy(cfg, dep, backend=be)

    page = build_serving(cfg, backend=be)

    assert page.current.id == dep and page.current.active and page.current.status == "deployed"
    assert [s.step for s in page.current.steps] == ["gate", "deploy", "smoke_test"]
    assert {s.version: s.role for s in page.serving.slots} == {v1: "live", v2: "idle"}
    assert page.rollback.possible
    assert page.rollback.targets[0].version is None
    assert page.rollback.targets[0].label == f"end promotion #{dep} of v{v2}: v{v1} keeps all traffic"


def test_without_a_previous_version_the_button_says_why(sqlite_url, cfg_on, register_version):
    cfg = cfg_on(sqlite_url)
    be = FakeBackend()
    v1 = register_version(cfg)
    assert rollout(cfg, backend=be, golden=None).status == "promoted"

    page = build_serving(cfg, backend=be)

    assert not page.rollback.possible
    assert page.rollback.why_not.startswith(f"No previous version: v{v1} is the first champion")


def test_the_button_offers_what_plan_rollback_decides_and_never_a_rejected_version():
    aliases = {"champion": "3", "previous": "2", "challenger": "4"}
    records = [
        Record(1, "promotion", "1", None, "promoted"), Record(2, "promotion", "2", "1", "promoted"),
        Record(3, "promotion", "3", "2", "promoted"), Record(4, "promotion", "4", "3", "rolled_back"),
    ]  # fmt: skip

    option = rollback_option("ok", aliases, records)

    assert option.possible and [t.version for t in option.targets] == [None, "1"]  # never 4
    assert option.targets[0].label == plan_rollback(records, "3").reason == "v2 (previous champion)"
    assert option.targets[1].label == "v1 (champion since earlier, deployment #1)"
    assert rollback_option("unreachable", aliases, records).possible  # clm's history alone decides
    assert not rollback_option("unreachable", dict.fromkeys(aliases), []).possible


def test_the_rest_payload_is_the_pages_reading(db_url, cfg_on, register_version):
    from clm_lib.deploy.state import serving_state

    cfg = cfg_on(db_url)
    h = promote_two_then_reject_one(cfg, register_version)

    state = serving_state(cfg, backend=h.backend)
    page = build_serving(cfg, backend=h.backend)

    assert state["aliases"] == page.aliases == {"champion": h.v2, "previous": h.v1, "challenger": h.v3}
    assert state["rollback"]["targets"] == [{"version": None, "label": f"v{h.v1} (previous champion)"}]
    assert state["marks"] == {h.v3: "rejected by the canary (promotion #3)"}
    assert state["weights"] == h.backend.weights() and state["active_deployment"] is None
    assert {s["version"]: s["role"] for s in state["slots"].values()} == {h.v2: "live", h.v3: "idle"}
    json.dumps(state)  # JSON-ready as it is


def test_the_rest_payload_keeps_its_keys_and_reads_a_promotion_under_way(sqlite_url, cfg_on, register_version):
    from clm_lib.deploy.rollout import deploy, start
    from clm_lib.deploy.state import serving_state

    cfg = cfg_on(sqlite_url)
    be = FakeBackend()
    v1 = register_version(cfg)
    rollout(cfg, backend=be, golden=None)
    v2 = register_version(cfg)
    dep = start(cfg, actor="airflow:clm_promotion")
    deploy(cfg, dep, backend=be)

    state = serving_state(cfg, backend=be)

    assert list(state) == ["model", "strategy", "aliases", "registry", "active_deployment", "slots", "weights",
                           "serving_error", "router_problem", "database_problem", "rollback", "marks",
                           "lock_holder"]  # fmt: skip
    active = state["active_deployment"]
    assert list(active) == ["id", "kind", "version", "from_version", "strategy", "status", "slot", "stable_slot",
                            "actor", "reason", "outcome", "started_at", "finished_at", "switch_ms", "warm", "marks"]
    assert (active["id"], active["version"], active["from_version"], active["status"]) == (dep, v2, v1, "deployed")
    assert active["started_at"].endswith("+00:00") and active["finished_at"] is None
    assert state["rollback"]["targets"][0]["label"] == f"end promotion #{dep} of v{v2}: v{v1} keeps all traffic"
    assert state == serving_state(cfg, backend=be) and state["lock_holder"] is None


def test_the_deploy_layer_reads_the_serving_state_without_the_screens():
    import subprocess
    import sys

    code = ("import sys, clm_lib.deploy.state, clm_lib.deploy.rollback, clm_lib.deploy.rollout; "
            "print(sorted(m for m in sys.modules if m.startswith('clm_lib.reporting')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", "clm_lib.deploy imports the reporting layer above it"


def test_router_down_is_a_state_of_the_page(tmp_path, sqlite_url, mlflow_uri, clean_env):
    home = tmp_path / "home"
    cfg = _cfg(home, CLM_DATABASE_URL=sqlite_url, MLFLOW_TRACKING_URI=mlflow_uri)
    state = {"slots": {"blue": {"version": "4", "port": cfg.serving.blue_port}}, "weights": {"blue": 100, "green": 0}}
    (home / "serving").mkdir(parents=True)
    (home / "serving" / "state.json").write_text(json.dumps(state))

    page = build_serving(cfg)  # the real local backend: nothing runs

    assert page.serving.status == "ok"
    router = page.serving.router_problem
    assert "not answering" in router and str(cfg.serving.router_port) in router
    blue = page.serving.slots[0]
    assert (blue.version, blue.weight, blue.healthy, blue.detail) == ("4", 100, False, "process not running")
    assert sorted(p.name for p in (home / "serving").iterdir()) == ["state.json"], "reading created or started nothing"


class _HungBackend(FakeBackend):
    def status(self):
        time.sleep(1.5)
        return super().status()


def test_a_hung_backend_cannot_hold_the_page(sqlite_url, cfg_on):
    cfg = cfg_on(sqlite_url)

    started = time.monotonic()
    page = build_serving(cfg, backend=_HungBackend(), read_timeout_s=0.2)

    assert time.monotonic() - started < 1.0
    assert page.serving.status == "unreachable" and "did not answer within 0.2 s" in page.serving.message


@pytest.mark.parametrize(
    ("env", "status", "says"),
    [({"CLM__SERVING__BACKEND": "nope"}, "error", "unknown backend 'nope'"),
     ({"CLM__DEPLOY__STRATEGY": "alias"}, "off", "deploy.strategy is alias")],
)  # fmt: skip
def test_serving_that_cannot_be_read_or_is_off(sqlite_url, cfg_on, env, status, says):
    page = build_serving(cfg_on(sqlite_url, **env))

    assert page.serving.status == status and says in page.serving.message


def test_an_unmigrated_database_is_explained(tmp_path, cfg_on):
    empty = tmp_path / "empty.db"
    empty.touch()

    page = build_serving(cfg_on(f"sqlite:///{empty}"))

    assert page.database_problem.startswith("cannot read clm's database") and "clm init" in page.database_problem
    assert page.history == [] and page.current is None


def test_migrated_empty_database_has_no_history(tmp_path, cfg_on):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)

    page = build_serving(cfg_on(url))

    assert page.database_problem is None and page.history == [] and page.lock_holder is None
