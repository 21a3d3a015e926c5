import socket
import time
from pathlib import Path

import pytest

from clm_lib.config import load_config
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import IngestionBatch
from clm_lib.reporting import build_overview
from clm_lib.reporting.overview import redact_url

REPO = Path(__file__).resolve().parents[3]


def _cfg(home: Path, db_url: str | None = None, tracking_uri: str | None = None):
    env = {"CLM_HOME": str(home)}
    if db_url:
        env["CLM__DATABASE__URL"] = db_url
    if tracking_uri:
        env["CLM__REGISTRY__TRACKING_URI"] = tracking_uri
    return load_config(REPO / "include" / "clm.yaml", environ=env)


@pytest.fixture
def home(tmp_path, monkeypatch, clean_env) -> Path:
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


def test_fresh_install_reads_well_and_creates_nothing(home):
    overview = build_overview(_cfg(home))

    assert overview.is_fresh_install
    assert "clm init" in overview.database_problem
    assert overview.registry.status == "empty"
    assert overview.registry.champion is None and overview.registry.challenger is None
    assert overview.landing_dir == str(home / "landing")
    assert overview.candidates == [] and overview.matrix is None and overview.audit == []
    assert not (home / "clm.db").exists() and not (home / "mlflow.db").exists()


def test_migrated_but_empty_database_is_not_a_problem(home, tmp_path):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)

    overview = build_overview(_cfg(home, db_url=url))

    assert overview.database_problem is None
    assert overview.is_fresh_install
    assert overview.ingestion.last_batch is None and overview.ingestion.committed_batches == 0


def test_full_history(home, history_db, history_registry):
    o = build_overview(_cfg(home, db_url=history_db, tracking_uri=history_registry))

    assert o.database_problem is None and not o.is_fresh_install
    reg = o.registry
    assert reg.status == "ok"
    assert (reg.champion.version, reg.champion.training_run_id) == ("2", "tr-002")
    assert reg.champion.average_accuracy == pytest.approx(89.25) and reg.champion.backward_transfer == -3.0
    assert reg.champion.mlflow_run_id and reg.champion.registered_at is not None
    assert (reg.challenger.version, reg.challenger.average_accuracy) == ("3", pytest.approx(83.17))

    assert [c.training_run_id for c in o.candidates] == ["tr-004", "tr-003", "tr-002", "tr-001"]
    failed, v3, v2, v1 = o.candidates
    assert (failed.status, failed.model_version, failed.gate, failed.error) == (
        "failed", None, None, "CUDA out of memory"
    )  # fmt: skip
    assert (v3.model_version, v3.aliases, v3.new_rows, v3.replay_rows) == ("3", ["challenger"], 400, 200)
    assert v3.gate.passed is False and v3.gate.champion_version == "2"
    assert v3.gate.reasons == ["billing: 90.5 -> 70.5 (-20.0; budget -5.0) REGRESSED"]  # not another model's
    assert (v2.aliases, v2.gate.passed, v2.backward_transfer) == (["champion"], True, -3.0)
    assert v1.aliases == [] and v1.backward_transfer is None and v1.gate.champion_version is None
    assert v2.airflow_run_id == "manual__tr-002" and v2.started_at.tzinfo is not None

    m = o.matrix
    assert (m.training_run_id, m.model_version) == ("tr-003", "3")
    assert m.tasks == ["routers", "billing", "thermostats"]
    assert m.rows[0] == [91.0, None, None] and m.rows[-1] == [86.0, 70.5, 93.0]
    assert m.learned_at == {"routers": 0, "billing": 1, "thermostats": 2}
    assert (m.average_accuracy, m.backward_transfer) == (83.17, -12.5)
    assert m.forgetting == {"routers": pytest.approx(5.0), "billing": pytest.approx(20.0)}

    b = o.ingestion.last_batch
    assert (b.id, b.rows_in, b.rows_curated, b.rows_quarantined, b.rows_duplicate) == ("b-2", 500, 430, 50, 20)
    assert b.reconciles
    assert [(c.label, c.value) for c in b.per_task] == [("thermostats", 400), ("billing", 30)]
    assert [(c.label, c.value) for c in b.per_reason] == [("prompt_too_short", 30), ("unknown_task", 20)]
    assert (o.ingestion.committed_batches, o.ingestion.rows_curated, o.ingestion.rows_quarantined) == (2, 710, 65)

    assert [(a.actor, a.from_value, a.to_value) for a in o.audit] == [
        ("airflow:clm_register", "2", "3"),
        ("alice", "1", "2"),
        ("airflow:clm_promote", None, "1"),
    ]
    assert o.audit[1].reason == "gate passed; bake window clean"


def test_registry_without_the_model_is_empty_not_broken(home, tmp_path, mlflow_uri):
    o = build_overview(_cfg(home, tracking_uri=mlflow_uri))

    assert o.registry.status == "empty"
    assert "'clm-assistant'" in o.registry.message


def test_unreachable_mlflow_is_shown_quickly_and_the_database_still_read(home, history_db):
    uri = f"http://user:s3cret@127.0.0.1:{_closed_port()}"

    start = time.perf_counter()
    o = build_overview(_cfg(home, db_url=history_db, tracking_uri=uri))
    elapsed = time.perf_counter() - start

    assert elapsed < 5
    assert o.registry.status == "unreachable"
    assert "not answering" in o.registry.message and "s3cret" not in o.registry.message
    assert o.registry.tracking_uri.startswith("http://user:***@127.0.0.1:")
    assert [c.model_version for c in o.candidates] == [None, "3", "2", "1"]
    assert all(c.aliases == [] for c in o.candidates)
    assert o.matrix is not None


def test_an_unreadable_database_is_a_message_not_an_exception(home, tmp_path):
    not_a_db = tmp_path / "clm.db"
    not_a_db.write_text("this is not SQLite")

    o = build_overview(_cfg(home, db_url=f"sqlite:///{not_a_db}"))

    assert "cannot read clm's database" in o.database_problem
    assert "clm init" in o.database_problem


def test_counts_that_do_not_reconcile_are_flagged(home, tmp_path):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    with session_scope(url) as s:
        s.add(
            IngestionBatch(
                id="b-x", source="landing/x.jsonl", source_format="jsonl", file_sha256="c" * 64, status="failed",
                rows_in=10, rows_curated=3, rows_quarantined=1, rows_duplicate=0, error="disk full",
                task_counts={"routers": {"curated": 3, "quarantined": 1}}, notes=["2 blank lines skipped"],
            )
        )  # fmt: skip

    b = build_overview(_cfg(home, db_url=url)).ingestion.last_batch

    assert not b.reconciles and b.error == "disk full" and b.notes == ["2 blank lines skipped"]
    assert [(c.label, c.value) for c in b.per_task] == [("routers · curated", 3), ("routers · quarantined", 1)]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://clm:pw@db:5432/clm", "postgresql+psycopg2://clm:***@db:5432/clm"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////var/clm/clm.db", "sqlite:////var/clm/clm.db"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
