from __future__ import annotations

import pytest

from clm_lib.training.strategies import (
    STRATEGIES,
    Strategy,
    build_strategies,
    register_strategy,
    registered_strategies,
)
from clm_lib.training.strategies.replay import Replay


def test_builtin_strategies_are_registered():
    assert registered_strategies()["replay"] is Replay
    assert Replay.name == "replay"


def test_a_name_cannot_be_taken_twice():
    class Impostor(Strategy):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_strategy(name="replay", strategy_cls=Impostor)
    assert registered_strategies()["replay"] is Replay


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


def test_a_plugin_runs_after_the_builtins_when_its_config_switches_it_on(tiny_cfg, request):
    class Logger(Strategy):
        @classmethod
        def from_config(cls, cfg):
            return cls()

    register_strategy(name="logger", strategy_cls=Logger)
    request.addfinalizer(lambda: STRATEGIES.unregister("logger"))
    assert list(registered_strategies())[-1] == "logger" and Logger.name == "logger"
    assert [s.name for s in build_strategies(tiny_cfg)] == ["replay", "logger"]
