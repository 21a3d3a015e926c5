from clm_lib import audit
from clm_lib.db import session_scope


def test_record_and_read_back_newest_first(db_url, monkeypatch):
    monkeypatch.setenv("CLM_ACTOR", "alice")
    with session_scope(db_url) as s:
        audit.record(s, action="alias.champion", target="m@champion", from_value="1", to_value="2", reason="gate")
        audit.record(s, action="model.registered", target="m/3", actor="airflow:clm_continual_training")
    with session_scope(db_url) as s:
        entries = audit.recent(s)
        assert [e.action for e in entries] == ["model.registered", "alias.champion"]
        assert entries[1].actor == "alice"
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
