from __future__ import annotations

import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.errors import ConfigError

TINY = REPO_ROOT / "include" / "tiny.yaml"


def test_shared_adapters_by_default_and_per_task_from_the_environment(tmp_path):
    assert load_config(TINY, environ={"CLM_HOME": str(tmp_path)}).training.adapters.mode == "shared"
    cfg = load_config(
        TINY,
        environ={
            "CLM_HOME": str(tmp_path),
            "CLM__TRAINING__ADAPTERS__MODE": "per_task",
            "CLM__TRAINING__ADAPTERS__ORTHOGONALITY": "0.5",
            "CLM__TRAINING__ADAPTERS__ROUTER__EXAMPLES_PER_TASK": "50",
        },
    )
    adapters = cfg.training.adapters
    assert (adapters.mode, adapters.orthogonality, adapters.router.examples_per_task) == ("per_task", 0.5, 50)


def test_bad_adapter_settings_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="orthogonality is a penalty between per-task adapters"):
        load_config(TINY, environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__ADAPTERS__ORTHOGONALITY": "1"})
    with pytest.raises(ConfigError, match=r"training\.adapters\.mode"):
        load_config(TINY, environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__ADAPTERS__MODE": "one_per_user"})
    with pytest.raises(ConfigError, match=r"training\.adapters\.router\.holdout_fraction"):
        load_config(TINY, environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__ADAPTERS__ROUTER__HOLDOUT_FRACTION": "1"})
