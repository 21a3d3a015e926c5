from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clm_lib.config import load_config
from clm_lib.errors import ConfigError
from clm_lib.training.strategy_config import FreezeConfig


def test_the_shipped_config_uses_the_benchmarks_recommendation_and_the_rest_is_off(tmp_path: Path):
    from clm_lib.training.strategy_config import EwcConfig

    training = load_config(environ={"CLM_HOME": str(tmp_path)}).training
    assert training.replay.enabled and training.replay.policy == "task_balanced"
    assert training.ewc.enabled and training.ewc.strength == EwcConfig().strength == 0.003  # docs/continual.md
    assert not (EwcConfig().enabled or training.distillation.enabled or training.freeze.active)


def test_strategies_are_switched_from_the_environment(tmp_path: Path):
    training = load_config(
        environ={
            "CLM_HOME": str(tmp_path),
            "CLM__TRAINING__EWC__ENABLED": "true",
            "CLM__TRAINING__EWC__STRENGTH": "50",
            "CLM__TRAINING__DISTILLATION__ENABLED": "true",
            "CLM__TRAINING__DISTILLATION__TOP_K": "20",
            "CLM__TRAINING__FREEZE__LOWEST_BLOCKS": "1",
            "CLM__TRAINING__REPLAY__POLICY": "reservoir",
            "CLM__TRAINING__REPLAY__TASK_WEIGHTS": "{routers: 2}",
        }
    ).training
    assert (training.ewc.enabled, training.ewc.strength) == (True, 50.0)
    assert (training.distillation.enabled, training.distillation.top_k) == (True, 20)
    assert training.freeze.active and training.freeze.lowest_blocks == 1
    assert training.replay.policy == "reservoir" and training.replay.task_weights == {"routers": 2.0}


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CLM__TRAINING__EWC__DECAY": "1.5"}, "training.ewc.decay"),
        ({"CLM__TRAINING__EWC__NORMALIZE": "sum"}, "training.ewc.normalize"),
        ({"CLM__TRAINING__DISTILLATION__TEMPERATURE": "0"}, "training.distillation.temperature"),
        ({"CLM__TRAINING__FREEZE__LOWEST_BLOCKS": "-1"}, "training.freeze.lowest_blocks"),
        ({"CLM__TRAINING__REPLAY__POLICY": "fifo"}, "training.replay.policy"),
        ({"CLM__TRAINING__REPLAY__MIN_WEIGHT": "4"}, "training.replay"),
        ({"CLM__TRAINING__REPLAY__TASK_WEIGHTS": "{routers: -1}"}, "training.replay"),
        ({"CLM__TRAINING__EWC__STRENGHT": "1"}, "training.ewc.strenght"),
    ],
)
def test_bad_strategy_settings_name_their_field(tmp_path: Path, env: dict[str, str], field: str):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(environ={"CLM_HOME": str(tmp_path), **env})


def test_freeze_is_active_only_when_it_asks_for_something():
    assert not FreezeConfig().active
    assert FreezeConfig(patterns=["q_proj"]).active and FreezeConfig(embeddings=True).active


def test_the_config_module_does_not_import_torch():
    import subprocess

    code = "import sys, clm_lib.training.strategy_config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
