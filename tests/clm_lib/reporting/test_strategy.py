"""The Continual strategy screen's data: what each strategy recorded in each run, read back from clm's database."""

from __future__ import annotations

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun
from clm_lib.reporting import strategy
from clm_lib.reporting.stores import StoreDown
from clm_lib.reporting.training import NotFound
from tests.clm_lib.reporting.training_history import EWC_B, FREEZING_B, REPLAY_B, seed_training


@pytest.fixture
def seeded(cfg, db_url, tmp_path):
    cfg.database.url = db_url
    seed_training(db_url, tmp_path / "runs")
    return cfg


def test_a_run_with_every_strategy(seeded):
    found = strategy.run_strategy(seeded, "tr-b")

    assert found.recorded and found.replay_fraction == 0.31
    rp = found.replay
    assert (rp.buffer_version, rp.buffer_version_written) == (1, 2)
    assert rp.buffer_tasks == {"routers": 100} and rp.buffer_tasks_after == REPLAY_B["buffer_tasks_after"]
    assert rp.task_weights == {"routers": 1.4} and rp.dynamic and "evaluation 1" in rp.weights_from
    assert found.ewc.strength == EWC_B["strength"] and found.ewc.fisher_raw_mean == 3.2e-7
    assert found.distillation.teacher and found.distillation.temperature == 2.0
    assert found.freezing.frozen_modules == FREEZING_B["frozen_modules"]
    assert found.other == {"orthogonality": {"weight": 0.1, "last_penalty": 0.02}}
    assert [(s.task, s.count, s.share) for s in found.composition] == [("routers", 100, 50.0), ("billing", 100, 50.0)]


def test_runs_that_recorded_nothing_say_so(seeded):
    found = strategy.run_strategy(seeded, "tr-e")
    assert not found.recorded and found.replay is None and found.ewc is None and found.composition == []
    first = strategy.run_strategy(seeded, "tr-a")
    assert first.replay is not None and not first.replay.dynamic and first.ewc is None


def test_history_oldest_first_with_the_replay_fraction_chart(seeded):
    found = strategy.history(seeded)

    assert [r.run_id for r in found.runs] == ["tr-a", "tr-b", "tr-c"]  # succeeded runs only
    assert found.tasks == ["routers", "billing"]
    assert [r.replay_fraction for r in found.runs] == [0.0, 0.31, None]
    chart = found.chart
    assert len(chart.marks) == 3 and chart.threshold  # the configured mix ratio is drawn
    assert "tr-c: replay fraction not recorded" in chart.marks[2].title
    assert [r.run_id for r in strategy.history(seeded, limit=1).runs] == ["tr-c"]


def test_a_record_of_the_wrong_shape_is_dropped_not_shown(seeded):
    with session_scope(seeded.database_url) as s:
        s.get(TrainingRun, "tr-c").strategies = {"replay": {"mix_ratio": {"x": "y"}, "task_weights": {"a": "heavy"},
                                                            "buffer_tasks_after": ["not", "a", "map"]},
                                                 "ewc": "on"}  # fmt: skip
    found = strategy.run_strategy(seeded, "tr-c")
    assert found.replay.mix_ratio is None and found.replay.buffer_tasks_after == {} and found.composition == []
    assert found.replay.task_weights == {} and found.ewc is None


def test_page_defaults_to_the_newest_and_names_unknown_runs(seeded):
    assert strategy.build_strategy(seeded).selected.run_id == "tr-c"
    assert strategy.build_strategy(seeded, {"run": "tr-b"}).selected.run_id == "tr-b"
    with pytest.raises(NotFound, match="tr-x"):
        strategy.build_strategy(seeded, {"run": "tr-x"})


def test_fresh_install(cfg):
    with pytest.raises(StoreDown):
        strategy.build_strategy(cfg)
    assert not (cfg.home / "clm.db").exists()
