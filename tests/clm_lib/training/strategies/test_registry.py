from __future__ import annotations

import pytest

from clm_lib.training.strategies import Strategy, build_strategies, register_strategy, registered_strategies
from clm_lib.training.strategies.replay import Replay


def test_builtin_strategies_are_registered():
    assert registered_strategies()["replay"] is Replay
    assert Replay.name == "replay"


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy("replay")
        class Impostor(Strategy):
            pass


def test_base_hooks_do_nothing():
    s = Strategy()
    assert s.before_batch(None, None) is None
    assert s.extra_loss(None, None, None) is None
    assert s.state_dict() == {} and s.params() == {}


def test_builtin_strategies_run_in_hook_order(tiny_cfg):
    assert list(registered_strategies())[:4] == ["freezing", "replay", "ewc", "distillation"]
    tiny_cfg.training.freeze.lowest_blocks = 1
    tiny_cfg.training.ewc.enabled = True
    tiny_cfg.training.distillation.enabled = True
    assert [s.name for s in build_strategies(tiny_cfg)] == ["freezing", "replay", "ewc", "distillation"]
