"""Models and Alembic migrations describe the same schema, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from clm_lib import audit
from clm_lib.db import get_engine, session_scope, upgrade
from clm_lib.db.models import AuditEntry, Base


def test_migrations_match_models(db_url):
    engine = get_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_upgrade_is_idempotent_and_round_trips(db_url):
    upgrade(db_url)
    with session_scope(db_url) as s:
        audit.record(s, actor="tester", action="alias.champion", target="m@champion", to_value="1",
                     details={"why": ["json", "survives"]})
    with session_scope(db_url) as s:
        entry = s.query(AuditEntry).one()
        assert entry.details == {"why": ["json", "survives"]}
        assert entry.at.tzinfo is not None or db_url.startswith("sqlite")


def test_0011_adds_evaluation_metrics_and_leaves_older_evaluations_without(tmp_path):
    from sqlalchemy import text

    from clm_lib.db.models import Evaluation

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url, "0010")
    assert "metrics" not in {c["name"] for c in inspect(get_engine(url)).get_columns("evaluations")}
    at = "2026-12-07 00:00:00"
    run = {"id": "r", "status": "succeeded", "trigger": "{}", "base_model": "b", "config_hash": "h", "new_rows": 0,
           "replay_rows": 0, "tasks": '["a"]', "strategies": "{}", "metrics": "{}", "started_at": at}  # fmt: skip
    evaluation = {"training_run_id": "r", "tasks": '["a"]', "scores": '{"a": 80.0}', "matrix": "[[80.0]]",
                  "average_accuracy": 80.0, "created_at": at}  # fmt: skip
    with get_engine(url).begin() as conn:  # as a clm from before 0011 wrote it
        for table, row in (("training_runs", run), ("evaluations", evaluation)):
            columns = ", ".join(f'"{c}"' for c in row)
            conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)
    get_engine(url).dispose()
    upgrade(url)
    stored = {"a": {"primary": "macro_f1", "values": {"exact_match": 85.0, "macro_f1": 60.0}}}
    with session_scope(url) as s:
        old = s.query(Evaluation).one()
        assert (old.scores, old.metrics) == ({"a": 80.0}, None)
        s.add(Evaluation(training_run_id="r", tasks=["a"], scores={"a": 60.0}, metrics=stored, matrix=[[60.0]],
                         average_accuracy=60.0))  # fmt: skip
    with session_scope(url) as s:
        assert s.query(Evaluation).order_by(Evaluation.id.desc()).first().metrics == stored
