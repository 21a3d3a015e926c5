"""The audit log: written in the caller's transaction, chained, append-only, and verified (issue #10)."""

from __future__ import annotations

import getpass
import json
import os
import stat
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from clm_lib import audit
from clm_lib.db import get_engine, session_scope, upgrade
from clm_lib.db.models import AuditEntry


def _write(url: str, n: int, **kw) -> None:
    with session_scope(url) as s:
        for i in range(n):
            audit.record(s, action="alias.champion", target="m@champion", from_value=str(i), to_value=str(i + 1),
                         reason=f"move {i}", **kw)


def _verify(url: str) -> audit.VerifyResult:
    with session_scope(url) as s:
        return audit.verify(s)


def _tamper(url: str, *statements: str) -> None:
    """What someone with write access to the database (and DDL rights) could do: lift the trigger, then edit."""
    engine = get_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        for statement in statements:
            conn.execute(text(statement))


def test_record_and_read_back_newest_first(db_url, monkeypatch):
    monkeypatch.setenv("CLM_ACTOR", "alice")  # ignored: anyone can set a variable (issue #10)
    with session_scope(db_url) as s:
        audit.record(s, action="alias.champion", target="m@champion", from_value="1", to_value="2", reason="gate")
        audit.record(s, action="model.registered", target="m/3", actor="airflow:clm_continual_training")
    with session_scope(db_url) as s:
        entries = audit.recent(s)
        assert [e.action for e in entries] == ["model.registered", "alias.champion"]
        assert entries[1].actor == f"system:{getpass.getuser()}"
        assert entries[0].actor == "airflow:clm_continual_training"
        assert (entries[1].from_value, entries[1].to_value) == ("1", "2")
        assert [e.action for e in audit.recent(s, action="alias.champion")] == ["alias.champion"]


def test_a_failed_transaction_leaves_no_entry(db_url):
    try:
        with session_scope(db_url) as s:
            audit.record(s, action="alias.champion", target="m@champion", to_value="9")
            raise RuntimeError("alias move failed")
    except RuntimeError:
        pass
    with session_scope(db_url) as s:
        assert audit.recent(s) == []
    _write(db_url, 1)
    assert _verify(db_url).ok


def test_an_untouched_chain_verifies(db_url):
    assert _verify(db_url).ok  # an empty log is a valid chain
    _write(db_url, 3, details={"weights": (90, 10), "at": {"step": 1.5}})
    _write(db_url, 2)
    result = _verify(db_url)
    with session_scope(db_url) as s:
        newest = audit.recent(s, limit=1)[0]
    assert (result.ok, result.checked, result.head, result.broken_id) == (True, 5, newest.hash, None)
    assert newest.hash in result.message


@pytest.mark.parametrize(
    ("statements", "broken_id", "problem"),
    [
        (["UPDATE audit_log SET reason = 'nothing to see' WHERE id = 2"], 2, "edited"),
        (["UPDATE audit_log SET actor = 'alice' WHERE id = 3"], 3, "edited"),
        (["DELETE FROM audit_log WHERE id = 2"], 3, "deleted"),
        (["DELETE FROM audit_log WHERE id = 1"], 2, "deleted"),
        (["UPDATE audit_log SET id = 100 WHERE id = 2", "UPDATE audit_log SET id = 2 WHERE id = 3",
          "UPDATE audit_log SET id = 3 WHERE id = 100"], 2, "reordered"),
    ],
    ids=["reason-edited", "actor-edited", "middle-deleted", "first-deleted", "swapped"],
)
def test_verify_names_the_first_tampered_entry(db_url, statements, broken_id, problem):
    _write(db_url, 4)
    _tamper(db_url, *statements)
    result = _verify(db_url)
    assert (result.ok, result.broken_id, result.problem) == (False, broken_id, problem)
    assert f"entry #{broken_id}" in result.message


def test_verify_with_another_key_fails_at_the_first_entry(db_url):
    _write(db_url, 2)
    with session_scope(db_url) as s:
        result = audit.verify(s, key=b"not-the-key")
    assert (result.ok, result.broken_id, result.problem) == (False, 1, "edited")
    assert "audit key" in result.message


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET reason = 'x'", "DELETE FROM audit_log"])
def test_the_table_refuses_update_and_delete(db_url, statement):
    _write(db_url, 2)
    with pytest.raises(DBAPIError, match="append-only"), get_engine(db_url).begin() as conn:
        conn.execute(text(statement))
    assert _verify(db_url).checked == 2


@pytest.mark.postgres
def test_postgresql_refuses_truncate(postgres_url):
    upgrade(postgres_url)
    _write(postgres_url, 1)
    with pytest.raises(DBAPIError, match="append-only"), get_engine(postgres_url).begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    assert _verify(postgres_url).checked == 1


def test_concurrent_writers_keep_one_chain(db_url):
    writers, each = 4, 8
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                _write(db_url, 1, actor=f"writer-{n}-{i}")
        except BaseException as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = _verify(db_url)
    assert (result.ok, result.checked) == (True, writers * each)


def test_two_entries_cannot_share_a_predecessor(db_url):
    # The last line of defence against a fork, should a writer ever skip the lock.
    _write(db_url, 1)
    with session_scope(db_url) as s:
        first = audit.recent(s)[0]
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        for n in range(2):
            entry = AuditEntry(at=first.at, actor=f"w{n}", action="x", target="t", reason="", details={},
                               prev_hash=first.hash)
            entry.hash = audit.entry_hash(audit.audit_key(), entry)
            s.add(entry)
            s.flush()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_the_migration_chains_entries_written_before_it(empty_db_url):
    # Migration 0005 hashes with its own frozen copy of the format: what it writes must verify with today's audit.py.
    url = empty_db_url
    upgrade(url, "0004")
    with get_engine(url).begin() as conn:
        for i in range(3):
            conn.execute(
                text("INSERT INTO audit_log (at, actor, action, target, reason, details) "
                     "VALUES (:at, 'bob', 'alias.champion', 'm@champion', :reason, :details)"),
                {"at": f"2026-11-2{i} 10:00:00.000000", "reason": f"old {i}", "details": json.dumps({"i": i})},
            )
    with pytest.raises(RuntimeError, match="needs the audit key"):
        upgrade(url)
    upgrade(url, audit_key=audit.audit_key())
    result = _verify(url)
    assert (result.ok, result.checked) == (True, 3)
    _write(url, 1)
    assert _verify(url).checked == 4


def test_default_actor_is_the_os_user_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("CLM_ACTOR", "alice")
    assert audit.default_actor() == f"system:{getpass.getuser()}"


def test_the_key_file_is_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV)
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    key = audit.audit_key()
    path = tmp_path / "home" / audit.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert audit.audit_key() == key and len(key) == 64
    assert audit.key_source() == str(path)
    monkeypatch.setenv(audit.KEY_ENV, "from-the-secret-store")
    assert (audit.audit_key(), audit.key_source()) == (b"from-the-secret-store", "$CLM_AUDIT_KEY")


def test_clm_audit_verify_exits_1_on_a_broken_chain(tmp_path, sqlite_url):
    from clm_lib.cli import cli

    env = {"CLM_HOME": str(tmp_path / "home"), "CLM_DATABASE_URL": sqlite_url}
    _write(sqlite_url, 3)
    ok = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    assert (ok.exit_code, ok.stdout.startswith("audit chain intact: 3 entries")) == (0, True)

    _tamper(sqlite_url, "UPDATE audit_log SET to_value = '7' WHERE id = 2")
    broken = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert broken.stderr.startswith("clm: audit chain broken: entry #2 was changed")
    as_json = CliRunner().invoke(cli, ["audit", "verify", "--json"], env=env)
    assert (as_json.exit_code, json.loads(as_json.stdout)["broken_id"]) == (1, 2)


def test_clm_audit_verify_without_a_database_creates_none(tmp_path):
    from clm_lib.cli import cli

    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["audit", "verify"], env={"CLM_HOME": str(home), "CLM_DATABASE_URL": ""})
    assert result.exit_code == 2
    assert result.stderr == f"clm: error: no clm database at {home / 'clm.db'}: run `clm init` first\n"
    assert not (home / "clm.db").exists()
