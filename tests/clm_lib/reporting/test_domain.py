"""Domain adaptations as the Continual strategy screen and ``/strategy/domain`` show them."""

from __future__ import annotations

from clm_lib.reporting.domain import domain_adaptations
from clm_lib.reporting.strategy import build_strategy
from tests.clm_lib.reporting.domain_history import seed_domain
from tests.clm_lib.reporting.training_history import HOSTILE


def test_stored_comparisons_newest_first(cfg):
    assert domain_adaptations(cfg).adaptations == []
    newer, older = seed_domain(cfg)
    found = domain_adaptations(cfg)
    assert [a.base_after for a in found.adaptations] == [newer, older]
    old = found.adaptations[1]
    assert (old.mean_change_original, old.mean_change_new) == (-5.0, 25.5)
    assert [(t.task, t.group, t.accuracy_change) for t in old.tasks] == [("routers", "original", -5.0),
                                                                       (HOSTILE, "new", 25.5)]  # fmt: skip
    assert old.text_loss_after == 5.25 and not old.in_use


def test_the_base_in_use_is_marked(cfg):
    newer, _older = seed_domain(cfg)
    cfg.model.base_path = newer
    assert [a.in_use for a in domain_adaptations(cfg).adaptations] == [True, False]


def test_the_strategy_page_carries_them(cfg, tmp_path, monkeypatch):
    from clm_lib.db import upgrade

    cfg.database.url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(cfg.database_url)
    seed_domain(cfg)
    assert len(build_strategy(cfg).domain.adaptations) == 2
