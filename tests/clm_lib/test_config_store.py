"""Configuration revisions: validation naming the field, diff, revert, conflicts, secrets, apply at next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clm_lib import config_store as cs
from clm_lib.config import DEFAULT_CONFIG, load_config
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, ConfigRevision


@pytest.fixture
def file_cfg(clm_home, db_url):
    return load_config(DEFAULT_CONFIG, environ={"CLM_HOME": str(clm_home), "CLM_DATABASE_URL": db_url})


def _change(url, file_cfg, changes, base, reason="tune"):
    with session_scope(url) as s:
        return cs.commit_change(s, file_cfg=file_cfg, changes=changes, base_revision=base, actor="alice", reason=reason)


def test_revision_1_is_the_file_read_without_writing_until_seeded(db_url, file_cfg):
    with session_scope(db_url) as s:
        live = cs.live_revision(s, file_cfg)
        assert s.scalars(select(ConfigRevision)).first() is None  # a read stores nothing
        stored = cs.seed(s, file_cfg)
        assert (stored.number, stored.content) == (1, live.content)
        assert cs.seed(s, file_cfg).number == 1  # idempotent
    assert (live.number, live.kind) == (1, "file")
    assert live.actor.startswith("file:")
    assert live.config.deploy.bake_seconds == file_cfg.deploy.bake_seconds
    assert live.config.revision == 1
    assert live.content["deploy.bake_seconds"] == file_cfg.deploy.bake_seconds
    # Only run-time-mutable fields are stored: paths, URLs and ports come from the file every time.
    assert not any(p.startswith(("paths.", "database.", "registry.", "server.", "serving.")) for p in live.content)


def test_a_change_becomes_the_next_revision_and_is_audited(db_url, file_cfg):
    rev = _change(db_url, file_cfg, {"deploy.bake_seconds": 42, "gate.max_task_drop": 2.5}, 1, "slower bake")
    assert rev.number == 2 and rev.base_number == 1
    assert rev.config.deploy.bake_seconds == 42.0 and rev.config.gate.max_task_drop == 2.5
    with session_scope(db_url) as s:
        assert cs.live_revision(s, file_cfg).number == 2
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "config.changed")).one()
    assert (entry.actor, entry.reason, entry.to_value) == ("alice", "slower bake", "revision 2")
    paths = {c["path"]: (c["old"], c["new"]) for c in entry.details["changes"]}
    assert paths == {"deploy.bake_seconds": (file_cfg.deploy.bake_seconds, 42.0), "gate.max_task_drop": (5.0, 2.5)}


@pytest.mark.parametrize(
    ("changes", "path", "rule"),
    [
        ({"deploy.canary_steps": [10, 50]}, "deploy.canary_steps", "last canary step must be 100"),
        ({"gate.max_task_drop": -1}, "gate.max_task_drop", "greater than or equal to 0"),
        ({"deploy.bake_seconds": "soon"}, "deploy.bake_seconds", "valid number"),
        ({"deploy.bake_sconds": 3}, "deploy.bake_sconds", "no such field"),
        ({"server.airflow_port": 9000}, "server.airflow_port", "read-only at run time"),
        ({"paths.lake": "/elsewhere"}, "paths.lake", "read-only at run time"),
    ],
)
def test_invalid_values_are_refused_naming_the_field_and_nothing_is_stored(db_url, file_cfg, changes, path, rule):
    with pytest.raises(cs.ConfigChangeError) as err:
        _change(db_url, file_cfg, changes, 1)
    assert any(p == path and rule in r for p, r in err.value.problems), err.value.problems
    with session_scope(db_url) as s:
        assert s.scalar(select(ConfigRevision.number).order_by(ConfigRevision.number.desc())) in (None, 1)
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "config.changed")).first() is None


def test_a_cross_field_rule_names_its_section(db_url, file_cfg):
    with pytest.raises(cs.ConfigChangeError) as err:
        _change(db_url, file_cfg, {"deploy.bake_seconds": 5000}, 1)
    assert any(p == "deploy" and "stale_after_seconds" in r for p, r in err.value.problems)


def test_a_reason_is_required_and_an_unchanged_value_is_no_revision(db_url, file_cfg):
    with pytest.raises(cs.ConfigChangeError, match="reason"):
        _change(db_url, file_cfg, {"gate.max_task_drop": 1}, 1, reason="  ")
    with pytest.raises(cs.ConfigChangeError, match="nothing to change"):
        _change(db_url, file_cfg, {"gate.max_task_drop": file_cfg.gate.max_task_drop}, 1)


def test_two_editors_from_the_same_base_the_second_gets_a_conflict_naming_the_newer(db_url, file_cfg):
    _change(db_url, file_cfg, {"gate.max_task_drop": 3}, 1)
    with pytest.raises(cs.ConfigConflict) as err:
        _change(db_url, file_cfg, {"deploy.bake_seconds": 9}, 1)
    assert err.value.newer == 2 and "revision 2" in str(err.value) and "alice" in str(err.value)
    with session_scope(db_url) as s:
        live = cs.live_revision(s, file_cfg)
    assert live.number == 2 and live.config.deploy.bake_seconds == file_cfg.deploy.bake_seconds


def test_revert_makes_an_old_revision_live_again_as_a_new_one(db_url, file_cfg):
    _change(db_url, file_cfg, {"gate.max_task_drop": 3}, 1)
    _change(db_url, file_cfg, {"deploy.bake_seconds": 9}, 2)
    with session_scope(db_url) as s:
        rev = cs.revert(s, file_cfg=file_cfg, to=1, base_revision=3, actor="bob", reason="back to the file")
    assert (rev.number, rev.kind, rev.reverted_to) == (4, "revert", 1)
    assert rev.config.gate.max_task_drop == 5.0 and rev.config.deploy.bake_seconds == file_cfg.deploy.bake_seconds
    with session_scope(db_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "config.reverted")).one()
        assert entry.details["reverted_to"] == 1
        assert {c["path"] for c in entry.details["changes"]} == {"gate.max_task_drop", "deploy.bake_seconds"}
        with pytest.raises(cs.RevisionNotFound, match="no configuration revision 99"):
            cs.revert(s, file_cfg=file_cfg, to=99, base_revision=4, actor="bob", reason="x")
        # History: newest first, each with its changes against the one before.
        hist = cs.history(s)
    assert [r.number for r, _ in hist] == [4, 3, 2, 1]
    assert [str(c) for c in hist[1][1]] == [f"deploy.bake_seconds: {file_cfg.deploy.bake_seconds} -> 9.0"]


def test_diff_lists_changed_fields_with_secrets_redacted(clm_home):
    env = {"CLM_HOME": str(clm_home)}
    a = load_config(DEFAULT_CONFIG, environ={**env, "CLM_DATABASE_URL": "postgresql://u:pw1@h/db"})
    b = load_config(DEFAULT_CONFIG, environ={**env, "CLM_DATABASE_URL": "postgresql://u:pw2@h/db",
                                                             "CLM__GATE__MAX_TASK_DROP": "1"})  # fmt: skip
    changes = cs.diff(a, b)
    assert [(c.path, c.old, c.new) for c in changes] == [("gate.max_task_drop", 5.0, 1.0)]
    assert "pw1" not in repr(changes) and "pw2" not in repr(changes)


def test_secrets_are_never_stored_nor_settable(db_url, file_cfg, clm_home):
    env = {"CLM_HOME": str(clm_home), "CLM_DATABASE_URL": db_url, "MLFLOW_TRACKING_URI": "http://u:hunter2@mlflow"}
    secret_cfg = load_config(DEFAULT_CONFIG, environ=env)
    with session_scope(db_url) as s:
        live = cs.live_revision(s, secret_cfg)
        assert live.config.tracking_uri == "http://u:hunter2@mlflow"  # connections still get the real one
        for row in s.scalars(select(ConfigRevision)):
            assert "hunter2" not in str(row.content)
    with pytest.raises(cs.ConfigChangeError) as err:
        _change(db_url, secret_cfg, {"registry.tracking_uri": "http://x"}, 1)
    assert "never stored" in str(err.value) or "read-only" in str(err.value)
    with pytest.raises(cs.ConfigChangeError, match="credential"):
        _change(db_url, secret_cfg, {"data.tasks": ["routers", "postgresql://u:pw@h/x"]}, 1)


def test_a_run_started_before_a_save_keeps_the_old_revision(db_url, file_cfg):
    with session_scope(db_url) as s:
        cs.live_revision(s, file_cfg)
    run_start = datetime.now(UTC)
    _change(db_url, file_cfg, {"deploy.bake_seconds": 17}, 1)  # saved mid-run
    with session_scope(db_url) as s:
        mid_run = cs.live_revision(s, file_cfg, as_of=run_start)
        next_run = cs.live_revision(s, file_cfg, as_of=datetime.now(UTC) + timedelta(seconds=1))
        older_than_all = cs.live_revision(s, file_cfg, as_of=run_start - timedelta(days=1))
    assert (mid_run.number, mid_run.config.deploy.bake_seconds) == (1, file_cfg.deploy.bake_seconds)
    assert (next_run.number, next_run.config.deploy.bake_seconds) == (2, 17.0)
    assert older_than_all.number == 1


def test_file_edits_to_mutable_fields_are_reported_not_applied(db_url, file_cfg, clm_home):
    with session_scope(db_url) as s:
        cs.seed(s, file_cfg)  # `clm init`
    edited = load_config(DEFAULT_CONFIG, environ={
        "CLM_HOME": str(clm_home), "CLM_DATABASE_URL": db_url, "CLM__GATE__MAX_TASK_DROP": "9"})  # fmt: skip
    with session_scope(db_url) as s:
        live = cs.live_revision(s, edited)
    assert live.config.gate.max_task_drop == 5.0
    assert [(c.path, c.old, c.new) for c in cs.file_differs(live, edited)] == [("gate.max_task_drop", 5.0, 9.0)]


def test_two_concurrent_saves_from_the_same_base_store_one_and_refuse_the_other(db_url, file_cfg):
    import threading

    barrier, outcomes = threading.Barrier(2), []

    def save(bake: float) -> None:
        barrier.wait()
        try:
            outcomes.append(_change(db_url, file_cfg, {"deploy.bake_seconds": bake}, 1).number)
        except cs.ConfigConflict as exc:
            outcomes.append(f"conflict {exc.newer}")

    threads = [threading.Thread(target=save, args=(b,)) for b in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(str, outcomes)) == ["2", "conflict 2"]
    with session_scope(db_url) as s:
        assert [n for (n,) in s.execute(select(ConfigRevision.number).order_by(ConfigRevision.number))] == [1, 2]
