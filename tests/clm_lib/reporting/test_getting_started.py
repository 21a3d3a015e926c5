"""The Getting started screen's five steps with their live status, on a fresh install and on the seeded history."""

from __future__ import annotations

from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import DriftReport
from clm_lib.reporting.getting_started import build_getting_started
from tests.clm_lib.reporting.test_overview import _cfg


def test_fresh_install_says_start_with_data_and_creates_nothing(tmp_path, clean_env):
    cfg = _cfg(tmp_path / "home")
    page = build_getting_started(cfg)

    assert [s.done for s in page.steps] == [False] * 5
    assert page.next_step.number == 1
    assert f"cp my-data.jsonl {cfg.landing_dir}/" in page.steps[0].commands
    assert "clm init" in page.problems[0] and not (tmp_path / "home" / "clm.db").exists()
    assert page.demo == ["make demo"] and any("model.base_path" in c for c in page.own_model_and_data)


def test_history_marks_what_happened(tmp_path, history_db, history_registry, clean_env):
    with session_scope(history_db) as s:
        s.add(DriftReport(check_id="c-1", detector="volume", status="ok", retrain_requested=True))
    page = build_getting_started(_cfg(tmp_path / "home", db_url=history_db, tracking_uri=history_registry))

    assert [s.done for s in page.steps] == [True] * 5 and page.next_step is None and not page.problems
    assert page.steps[1].status == "2 committed batch(es): 710 curated row(s), 65 quarantined"
    assert page.steps[2].status == "1 drift check(s), 1 requested a retraining"
    assert page.steps[3].status == "3 training run(s) succeeded, 3 evaluation(s)"
    assert page.steps[4].status == "v2 is champion"


def test_an_unreadable_database_is_unknown_not_an_error(tmp_path, clean_env):
    db = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(db)
    (tmp_path / "clm.db").write_bytes(b"not a database" * 100)
    page = build_getting_started(_cfg(tmp_path / "home", db_url=db))

    assert [s.done for s in page.steps][:4] == [None] * 4
    assert "clm's database cannot be read (since" in page.problems[0]
