"""Approval of promotions through a real Airflow: ``clm_promotion`` asked to require approval waits in Airflow's
human-in-the-loop tables, a second user (FAB role User, which may edit HITL details) answers through Airflow's HITL
REST API, and the rollout goes on (approved) or ends ``rejected`` with the champion left alone.

Runs after the other e2e files (tests/e2e/conftest.py, ``LAST``): the approved promotion makes a new champion. Alone,
it first makes a champion the way the demo does (one drop through ingest, training and promotion). The delay from the
approval to the first canary traffic goes to ``bench/results/approval.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
APPROVER = ("clm-approver", "approver-" + uuid.uuid4().hex[:12])
RESULTS = REPO / "bench" / "results" / "approval.json"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _seconds(since: datetime, at: str) -> float:
    return round((_utc(datetime.fromisoformat(at)) - since).total_seconds(), 2)


def register_copy(cfg, of_version: str, label: str) -> str:
    """Register an unchanged copy of ``of_version`` (its adapter and evaluation): a candidate that passes the gate
    and serves well, without a training run."""
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, TrainingRun, utcnow
    from clm_lib.registry.mlflow_registry import register_run

    run_id = f"e2e-approval-{label}-{uuid.uuid4().hex[:6]}"
    with session_scope(cfg.database_url) as s:
        src = s.scalars(select(TrainingRun).where(TrainingRun.model_version == of_version)).first()
        ev = s.scalars(select(Evaluation).where(Evaluation.model_version == of_version)
                       .order_by(Evaluation.id.desc())).first()  # fmt: skip
        out = cfg.models_dir / "runs" / run_id
        shutil.copytree(Path(src.output_dir) / "adapter", out / "adapter")
        trigger = {"kind": "manual", "reason": f"e2e copy of {of_version}"}
        s.add(TrainingRun(id=run_id, status="succeeded", trigger=trigger,
                          parent_model_version=of_version, base_model=src.base_model, config_hash=src.config_hash,
                          curated_version=src.curated_version, replay_version=src.replay_version, tasks=list(src.tasks),
                          output_dir=str(out), finished_at=utcnow()))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id=run_id, tasks=list(ev.tasks), scores=dict(ev.scores), matrix=list(ev.matrix),
                         average_accuracy=ev.average_accuracy, backward_transfer=ev.backward_transfer))  # fmt: skip
    return register_run(cfg, run_id, actor="e2e")


@pytest.fixture(scope="module")
def stack(airflow_stack, tmp_path_factory):
    from clm_lib.config import load_config
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version
    from clm_lib.services.airflow_client import AirflowClient

    cfg = load_config(environ=airflow_stack.env)
    admin = AirflowClient(airflow_stack.base_url, airflow_stack.username, airflow_stack.password)
    if alias_version(cfg, CHAMPION) is None:  # run alone: make a champion as the demo does
        from clm_lib.demo.stream import write_demo_drops
        from clm_lib.demo.walkthrough import run_walkthrough

        drops = write_demo_drops(tmp_path_factory.mktemp("drops"), tasks=cfg.data.tasks[:1], seed=7)
        lines: list[str] = []
        run_walkthrough(cfg, admin, drops[:1], echo=lines.append, timeout_per_update=400)
        assert alias_version(cfg, CHAMPION) is not None, lines
    admin.unpause("clm_promotion")
    user = ("--role", "User", "--username", APPROVER[0], "--password", APPROVER[1], "--firstname", "Appro",
            "--lastname", "Ver", "--email", "approver@example.org")  # fmt: skip
    made = airflow_stack.airflow("users", "create", *user)
    assert made.returncode == 0, made.stderr[-2000:]
    approver = AirflowClient(airflow_stack.base_url, *APPROVER)
    return cfg, admin, approver


def _hitl_path(run_id: str) -> str:
    from urllib.parse import quote

    return f"/api/v2/dags/clm_promotion/dagRuns/{quote(run_id, safe='')}/taskInstances/approval/-1/hitlDetails"


def _ask(cfg, admin, version: str, reason: str) -> tuple[str, dict, float]:
    """Trigger a promotion of ``version`` that requires approval; its run id, its HITL request, and the seconds
    until the request is listed and its task waits (as a person finds it in Required actions: an answer in the
    instant between the two is Airflow's own race, not what this test is about)."""
    t0 = time.monotonic()
    run_id = admin.trigger("clm_promotion", {"version": version, "reason": reason, "require_approval": True})
    deadline = t0 + 300
    while True:
        tis = {ti["task_id"]: ti for ti in admin.task_instances("clm_promotion", run_id)}
        approval = tis.get("approval") or {}
        # Parked, and its worker process gone: an answer while the process still heartbeats turns the task back
        # to scheduled under it, and Airflow kills it (a busy machine widens that instant).
        if approval.get("state") == "awaiting_input" and not _worker_alive(approval["id"]):
            return run_id, admin._request("GET", _hitl_path(run_id)), time.monotonic() - t0
        states = {t: ti["state"] for t, ti in tis.items()}
        assert admin.run("clm_promotion", run_id)["state"] in ("queued", "running"), (states, _log(admin, run_id))
        assert time.monotonic() < deadline, states
        time.sleep(1)


def _worker_alive(ti_id: str) -> bool:
    """A process titled as Airflow's task runner titles the one running task instance ``ti_id``."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if f"airflow worker -- {ti_id}" in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def _log(admin, run_id: str, task_id: str = "approval") -> str:
    """The end of a task's log, for a failure message."""
    from urllib.parse import quote

    path = f"/api/v2/dags/clm_promotion/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/1"
    try:
        return json.dumps(admin._request("GET", path + "?full_content=true"))[-4000:]
    except Exception as exc:  # the log is only evidence for a failure message
        return f"(no log: {exc})"


def _deployment(cfg, version: str):
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    with session_scope(cfg.database_url) as s:
        dep = history.latest_promotion(s, version)
        return history.as_dict(dep, history.events_of(s, dep.id))


def _audit(cfg, action: str, version: str):
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    with session_scope(cfg.database_url) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.to_value == version)).all()
        return [(e.actor, e.reason, e.details) for e in rows]


def _page(airflow_stack, admin, path: str) -> str:
    """A clm screen's HTML as the admin (Bearer token: clm's views accept it like the cookie)."""
    import urllib.request

    req = urllib.request.Request(airflow_stack.base_url + path, headers={"Authorization": f"Bearer {admin.token()}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


def test_an_approved_promotion_waits_for_the_approver_then_moves_traffic(stack, airflow_stack):
    from clm_lib.db import session_scope
    from clm_lib.deploy.approval import pending_approvals
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version

    cfg, admin, approver = stack
    champion = alias_version(cfg, CHAMPION)
    version = register_copy(cfg, champion, "approve")
    # Issue #12's "done when": an operator changes the bake window (the Configuration screen posts the same
    # change through the same function), and the next promotion bakes that long and says so on the Serving screen.
    bake = cfg.deploy.bake_seconds + 2
    live = admin._request("GET", "/clm/api/v1/config")["live_revision"]
    change = {"changes": {"deploy.bake_seconds": bake}, "base_revision": live, "reason": "e2e: longer bake"}
    saved = admin._request("POST", "/clm/api/v1/config", change)
    run_id, request, asked_s = _ask(cfg, admin, version, "e2e: approve me")

    assert request["subject"] == f"Promote {cfg.registry.model_name} version {version} over champion {champion}?"
    assert f"(/pluginsv2/clm/models/{version})" in request["body"] and "| margin |" in request["body"]
    assert request["options"] == ["Approve", "Reject"] and not request["response_received"]
    time.sleep(5)  # it really waits: nothing deployed, the task parked
    assert admin.task_states("clm_promotion", run_id)["approval"] == "awaiting_input"
    assert admin.task_states("clm_promotion", run_id)["deploy"] in (None, "none", "scheduled")
    dep = _deployment(cfg, version)
    assert dep["status"] == "pending" and not [e for e in dep["events"] if e["weights"]], dep
    with session_scope(cfg.database_url) as s:
        assert [p.version for p in pending_approvals(s)] == [version]

    body = {"chosen_options": ["Approve"], "params_input": {"comment": "e2e: looks right"}}
    answer = approver._request("PATCH", _hitl_path(run_id), body)
    approved_at = _utc(datetime.fromisoformat(answer["responded_at"]))
    run = admin.wait_for_run("clm_promotion", run_id, timeout=600)

    dep = _deployment(cfg, version)
    assert run["state"] == "success" and dep["status"] == "promoted", (admin.task_states("clm_promotion", run_id), dep,
                                                                       _log(admin, run_id))  # fmt: skip
    assert alias_version(cfg, CHAMPION) == version
    assert dep["config_revision"] == saved["number"], dep
    assert f"bake {bake:g} s" in _page(airflow_stack, admin, "/pluginsv2/clm/serving")
    baked = [e for e in dep["events"] if e["step"] == "bake" and e["status"] == "ok"]
    assert baked and all(f"baked {bake:g} s" in e["message"] for e in baked), baked
    ((actor, reason, details),) = _audit(cfg, "promotion.approved", version)
    assert (actor, reason) == (f"airflow:{APPROVER[0]}", f"approved by {APPROVER[0]}: e2e: looks right"), details
    at = {e["step"]: e["at"] for e in reversed(dep["events"])}  # each step's first event
    traffic = next(e for e in dep["events"] if e["step"] == "traffic" and (e["weights"] or {}).get(dep["slot"], 0) > 0)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "what": "clm_promotion with require_approval: the approver's answer through Airflow's HITL REST API -> "
        "the first deployment event that put the candidate on traffic (deploy and smoke test in between)",
        "config": Path(airflow_stack.env["CLM_CONFIG"]).name,
        "canary_steps": cfg.deploy.steps(),
        "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "request_visible_after_trigger_s": round(asked_s, 2),
        "approval_to_deploy_start_s": _seconds(approved_at, at["deploy"]),
        "approval_to_first_canary_traffic_s": _seconds(approved_at, traffic["at"]),
        "first_traffic": traffic["message"],
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\napproval -> first canary traffic: {result['approval_to_first_canary_traffic_s']} s")
    assert 0 < result["approval_to_first_canary_traffic_s"] < 600


def test_a_rejected_promotion_leaves_the_champion_and_marks_the_version(stack):
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version, client

    cfg, admin, approver = stack
    champion = alias_version(cfg, CHAMPION)
    version = register_copy(cfg, champion, "reject")
    run_id, _request, _ = _ask(cfg, admin, version, "e2e: reject me")
    # An answer within a second of the task pausing races Airflow's own resume of it: twice on a fresh clone the
    # task resumed ~0.7 s after it paused and was then killed ("the task shouldn't be running anymore") or its skip
    # was lost. A person answers later than that; the approval test above waits 5 s too.
    time.sleep(5)
    approver._request("PATCH", _hitl_path(run_id),
                      {"chosen_options": ["Reject"], "params_input": {"comment": "e2e: not now"}})  # fmt: skip
    admin.wait_for_run("clm_promotion", run_id, timeout=300)

    states = admin.task_states("clm_promotion", run_id)
    assert states["approval"] == "skipped", (states, _log(admin, run_id))
    assert {states[t] for t in ("deploy", "canary", "promote")} == {"skipped"}, states
    dep = _deployment(cfg, version)
    assert dep["status"] == "rejected" and not [e for e in dep["events"] if e["weights"]], dep
    assert alias_version(cfg, CHAMPION) == champion
    tags = client(cfg).get_model_version(cfg.registry.model_name, version).tags
    assert (tags["clm.approval"], tags["clm.approval.by"]) == ("rejected", APPROVER[0]), tags
    ((actor, reason, details),) = _audit(cfg, "promotion.rejected", version)
    assert actor == f"airflow:{APPROVER[0]}" and reason == f"rejected by {APPROVER[0]}: e2e: not now"
    assert details["decision"] == "rejected"
