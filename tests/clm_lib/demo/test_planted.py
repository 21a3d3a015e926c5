"""The planted bad version: it loads and has the champion's evaluation, but its adapter answers differently."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clm_lib.demo.planted import plant_bad_version, scramble_adapter
from clm_lib.errors import ClmError

_spec = importlib.util.spec_from_file_location("serving_helpers", Path(__file__).parents[1] / "serving/helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


def test_scrambling_changes_every_lora_b_and_keeps_the_adapter_loadable(tiny_base, tmp_path):
    from clm_lib.modeling.load import load_model

    adapter = helpers.make_adapter(tiny_base, tmp_path / "adapter", seed=3)
    before = load_file(str(adapter / "adapter_model.safetensors"))
    changed = scramble_adapter(adapter)
    after = load_file(str(adapter / "adapter_model.safetensors"))
    b_names = [n for n in before if "lora_B" in n]
    assert changed == len(b_names) > 0
    assert all(not torch.equal(before[n], after[n]) and before[n].shape == after[n].shape for n in b_names)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_A" in n)
    model, _ = load_model(tiny_base, adapter)
    assert model is not None


def test_without_a_champion_says_so(cfg, mlflow_uri):
    from clm_lib.db import upgrade

    cfg.registry.tracking_uri = mlflow_uri
    upgrade(cfg.database_url)
    with pytest.raises(ClmError, match="needs one promoted model first"):
        plant_bad_version(cfg)
