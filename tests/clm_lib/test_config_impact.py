"""The preview's impact: the gate judged again on stored evaluations, drift verdicts a new alpha would flip."""

from __future__ import annotations

import pytest

from clm_lib.config import DEFAULT_CONFIG, load_config
from clm_lib.config_impact import drift_impact, gate_impact
from clm_lib.db import session_scope
from tests.clm_lib.reporting.config_history import seed_gate_history


@pytest.fixture
def cfg(clm_home, db_url):
    seed_gate_history(db_url)
    return load_config(DEFAULT_CONFIG, environ={"CLM_HOME": str(clm_home), "CLM_DATABASE_URL": db_url})


def _with(cfg, **changes):
    gate = cfg.gate.model_copy(update=changes.pop("gate", {}))
    drift = cfg.drift.model_copy(update={"text_stats": cfg.drift.text_stats.model_copy(update=changes.pop("ts", {}))})
    return cfg.model_copy(update={"gate": gate, "drift": drift})


def test_a_tighter_budget_names_the_versions_the_gate_would_have_refused(cfg):
    with session_scope(cfg.database_url) as s:
        tighter = gate_impact(s, cfg, _with(cfg, gate={"max_task_drop": 1.0}))
        looser = gate_impact(s, _with(cfg, gate={"max_task_drop": 1.0}), cfg)
        same = gate_impact(s, cfg, _with(cfg, ts={"alpha": 0.05}))
    assert (tighter.checked, tighter.would_refuse, tighter.would_pass) == (2, ["2"], [])
    assert tighter.sentence == "the gate would have refused version 2 with this budget"
    assert looser.would_pass == ["2"] and same is None


def test_a_changed_alpha_counts_the_stored_verdicts_it_would_flip(cfg):
    with session_scope(cfg.database_url) as s:
        wider = drift_impact(s, cfg, _with(cfg, ts={"alpha": 0.05}))
        narrower = drift_impact(s, cfg, _with(cfg, ts={"alpha": 0.001}))
    assert [(d.detector, d.checked, d.would_fire, d.would_not_fire) for d in wider] == [("text_stats", 2, 1, 0)]
    assert [(d.would_fire, d.would_not_fire) for d in narrower] == [(0, 1)]
