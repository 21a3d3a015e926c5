"""The "Reports & audit" computations on a real clm database: filters, pages, exports, the chain's status, a
version's report, and a database that cannot be read."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import datetime, timedelta

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, GateDecision
from clm_lib.reporting import audit as audit_report
from clm_lib.reporting.audit import AuditFilter, FilterError
from clm_lib.reporting.report import TaskMetrics, UnknownVersion, build_report
from clm_lib.reporting.stores import StoreDown
from tests.conftest import REPO

from .audit_history import ENTRIES, HOSTILE, at, seed_audit


def _config(home, **env):
    from clm_lib.config import load_config

    return load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(home), **env})


@pytest.fixture
def log_cfg(clm_home, sqlite_url, mlflow_uri, monkeypatch):
    monkeypatch.setenv("CLM_AUDIT_KEY", "test-audit-key")
    seed_audit(sqlite_url)
    return _config(clm_home, CLM_DATABASE_URL=sqlite_url, MLFLOW_TRACKING_URI=mlflow_uri)


def _ids(page) -> list[int]:
    return [r.id for r in page.items]


def test_the_whole_log_newest_first_a_page_at_a_time(log_cfg):
    first = audit_report.page(log_cfg, limit=3)
    second = audit_report.page(log_cfg, offset=3, limit=3)
    last = audit_report.page(log_cfg, offset=6, limit=3)

    assert (first.total, _ids(first), _ids(second), _ids(last)) == (8, [8, 7, 6], [5, 4, 3], [2, 1])
    assert (first.prev_offset, first.next_offset, last.next_offset, last.prev_offset) == (None, 3, None, 3)
    assert first.actions == sorted({e[1] for e in ENTRIES})


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        (AuditFilter(actor="OTTO"), [7, 5, 4]),  # anywhere in the actor, case ignored
        (AuditFilter(action="alias."), [7, 4, 2, 1]),  # at the start of the action
        (AuditFilter(action="champion"), []),  # not anywhere in it
        (AuditFilter(target="serving_"), [6, 5]),
        (AuditFilter(target="100%"), []),  # % is a character here, not a wildcard
        (AuditFilter(since=at(3), until=at(5)), [4, 3]),  # since inclusive, until exclusive
        (AuditFilter(actor="otto", action="alias.champion", since=at(5)), [7]),
    ],
)
def test_filters(log_cfg, flt, ids):
    page = audit_report.page(log_cfg, flt)

    assert (_ids(page), page.total) == (ids, len(ids))


def test_links_into_other_screens(log_cfg):
    rows = {r.id: r for r in audit_report.page(log_cfg).items}

    assert (rows[2].version, rows[3].version, rows[7].version, rows[5].version) == ("1", "2", "1", None)
    assert rows[3].deployment_id == 4 and rows[6].feedback_id == 7 and rows[8].batch_id == "b-1"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-01-05", "until": "2026-01-02"}, "until"),
        ({"actor": "x" * 251}, "actor"),
    ],
)
def test_a_bad_filter_names_its_field(args, field):
    with pytest.raises(FilterError) as caught:
        AuditFilter.parse(args)

    assert caught.value.field == field


def test_a_date_means_midnight_utc_and_empty_fields_are_no_filter():
    flt = AuditFilter.parse({"actor": " ", "since": "2026-01-03", "until": "2026-01-04T08:00+02:00"})

    assert flt.actor is None and flt.since == at(3) - timedelta(hours=12)
    assert flt.until == datetime.fromisoformat("2026-01-04T06:00+00:00")
    assert flt.query() == {"since": "2026-01-03T00:00:00+00:00", "until": "2026-01-04T06:00:00+00:00"}


def test_csv_export_has_every_matching_entry_oldest_first_and_defuses_formulas(log_cfg):
    text = "".join(audit_report.csv_lines(audit_report.export_rows(log_cfg, AuditFilter(action="alias."))))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == ["1", "2", "4", "7"]
    assert list(rows[0]) == list(audit_report.COLUMNS)
    assert rows[3]["reason"] == '\'=HYPERLINK("http://evil")'  # a spreadsheet shows it, never runs it
    assert rows[0]["at"] == "2026-01-01T12:00:00.000000Z" and len(rows[0]["hash"]) == 64


def test_json_export_is_one_array_of_every_entry_with_its_chain(log_cfg):
    entries = json.loads("".join(audit_report.json_chunks(audit_report.export_rows(log_cfg))))

    assert [e["id"] for e in entries] == list(range(1, 9))
    assert entries[5]["reason"] == HOSTILE  # data is exported as it is; escaping is the display's job
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert entries[2]["details"] == {"deployment_id": 4}


def test_verify_status_reports_an_intact_chain_and_names_an_edited_entry(log_cfg):
    from sqlalchemy import text

    ok = audit_report.verify_status(log_cfg)
    assert (ok.ok, ok.checked, ok.broken_id) == (True, 8, None) and ok.head
    with session_scope(log_cfg.database_url) as s:
        s.execute(text("DROP TRIGGER audit_log_no_update"))  # what someone with write access could do
        s.execute(text("UPDATE audit_log SET reason = 'nothing to see' WHERE id = 5"))

    broken = audit_report.verify_status(log_cfg)

    assert (broken.ok, broken.checked, broken.broken_id, broken.problem) == (False, 4, 5, "edited")


def test_a_missing_database_is_store_down_and_is_not_created(clm_home, tmp_path):
    missing = tmp_path / "nowhere" / "clm.db"
    c = _config(clm_home, CLM_DATABASE_URL=f"sqlite:///{missing}")

    for read in (audit_report.page, audit_report.verify_status, audit_report.count):
        with pytest.raises(StoreDown) as caught:
            read(c)
        assert caught.value.store == "clm's database" and "since" in str(caught.value)
    assert not missing.exists()


def test_a_version_report_has_every_task_metric_and_the_primary_one(log_cfg, register_version):
    from clm_lib.db.models import Evaluation

    v1 = register_version(log_cfg, {"billing": 44.4})
    stored = {"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 44.4, "rouge_l": 90.1}}}
    with session_scope(log_cfg.database_url) as s:
        s.query(Evaluation).filter_by(model_version=v1).one().metrics = stored

    evaluation = build_report(log_cfg, v1).evaluation

    assert evaluation.scores == {"billing": 44.4}
    assert evaluation.metrics == {"billing": TaskMetrics("macro_f1", {"exact_match": 80.0, "macro_f1": 44.4,
                                                                     "rouge_l": 90.1})}  # fmt: skip


def test_a_version_report_gathers_evaluation_gate_lineage_deployments_and_audit(log_cfg, register_version):
    c = log_cfg
    v1 = register_version(c, {"routers": 91.0, "billing": 80.5})
    with session_scope(c.database_url) as s:
        s.add(GateDecision(model_name=c.registry.model_name, model_version=v1, champion_version=None, passed=True,
                           reasons=["no champion yet: AA 90.0 >= floor 50.0"]))  # fmt: skip
        s.add(Deployment(kind="promotion", model_name=c.registry.model_name, version=v1, strategy="alias",
                         status="promoted", actor="airflow:clm_promotion", reason="gate passed"))  # fmt: skip

    report = build_report(c, v1)

    assert report.version == v1 == "1"
    assert report.evaluation.scores == {"routers": 91.0, "billing": 80.5}
    # An evaluation without stored metrics scored exact match, and says so.
    assert report.evaluation.metrics == {"routers": TaskMetrics("exact_match", {"exact_match": 91.0}),
                                         "billing": TaskMetrics("exact_match", {"exact_match": 80.5})}  # fmt: skip
    assert report.evaluation.matrix.average_accuracy == 90.0
    assert report.gate.passed and report.gate.reasons == ["no champion yet: AA 90.0 >= floor 50.0"]
    assert report.lineage.training_run_id == "run-1" and report.lineage.tasks == ["routers", "billing"]
    assert [d.status for d in report.deployments] == ["promoted"]
    assert "challenger" in report.aliases
    # alias moves to or from v1 (seeded entries 1, 2, 7, 4) and the registration's own alias move
    assert {e.id for e in report.audit} >= {1, 2, 4, 7}
    assert all(e.version == "1" or e.from_value == "1" for e in report.audit)


@pytest.mark.parametrize("version", ["999", "latest", "1" * 40])
def test_a_version_clm_knows_nothing_about_is_unknown(log_cfg, version):
    with pytest.raises(UnknownVersion) as caught:
        build_report(log_cfg, version)

    assert version[:32] in str(caught.value)
