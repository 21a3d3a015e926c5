from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from clm_lib.errors import TrainingError
from clm_lib.modeling.load import load_model
from clm_lib.training.recipe import SUMMARY_FILE, train_update

from .helpers import records


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.training.max_steps = 12
    tiny_cfg.training.checkpoint_every = 5
    return tiny_cfg


def _lora_b(adapter_dir) -> list[torch.Tensor]:
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return [w for name, w in weights.items() if "lora_B" in name]


def test_an_update_writes_adapter_summary_and_checkpoint(tmp_path, cfg):
    out = tmp_path / "run"
    result = train_update(
        cfg,
        new_data=records("routers", 40),
        replay_data=records("billing", 20),
        parent_adapter_dir=None,
        output_dir=out,
        run_id="r1",
    )
    assert result.adapter_dir == out / "adapter"
    assert (result.steps, result.new_rows, result.replay_rows) == (12, 40, 20)
    assert result.replay_fraction == pytest.approx(cfg.training.replay.mix_ratio)
    assert result.tasks == ["billing", "routers"]
    assert result.tokens_seen > 12 * 16 * 20 and result.final_loss > 0 and result.wall_seconds > 0
    assert list(result.strategies) == ["replay"]
    assert result.strategies["replay"]["buffer_tasks"] == {"billing": 20}
    assert result.strategies["replay"]["replay_fraction"] == result.replay_fraction
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["run_id"] == "r1" and len(summary["losses"]) == 12
    assert summary["examples_seen"] == {"new": 96, "replay": 96}
    assert summary["lora"]["r"] == cfg.training.lora.r
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000012"]
    model, tok = load_model(cfg.base_model_dir, result.adapter_dir)
    assert tok.eos_token_id is not None and hasattr(model, "peft_config")

    # A retried task finds the finished checkpoint and trains no further.
    again = train_update(
        cfg,
        new_data=records("routers", 40),
        replay_data=records("billing", 20),
        parent_adapter_dir=None,
        output_dir=out,
        run_id="r1",
    )
    assert again.steps == 12 and again.final_loss == pytest.approx(result.final_loss)


def test_an_update_continues_its_parent_adapter(tmp_path, cfg):
    parent = train_update(
        cfg,
        new_data=records("routers", 20),
        replay_data=None,
        parent_adapter_dir=None,
        output_dir=tmp_path / "p",
        run_id="p",
    ).adapter_dir
    assert any(b.abs().sum() > 0 for b in _lora_b(parent))
    cfg.training.learning_rate = 1e-12  # hardly moves: the child must start where the parent ended
    child = train_update(
        cfg,
        new_data=records("billing", 20),
        replay_data=None,
        parent_adapter_dir=parent,
        output_dir=tmp_path / "c",
        run_id="c",
    )
    assert all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(_lora_b(parent), _lora_b(child.adapter_dir), strict=True)
    )
    summary = json.loads((tmp_path / "c" / SUMMARY_FILE).read_text())
    assert summary["parent_adapter_dir"] == str(parent)


def test_replay_rows_are_ignored_when_replay_is_off(tmp_path, cfg):
    cfg.training.replay.enabled = False
    result = train_update(
        cfg,
        new_data=records("routers", 20),
        replay_data=records("billing", 20),
        parent_adapter_dir=None,
        output_dir=tmp_path,
        run_id="seq",
    )
    assert (result.replay_rows, result.replay_fraction, result.strategies) == (0, 0.0, {})


def test_bad_inputs_are_clear_errors(tmp_path, cfg):
    def run(**kw):
        args = {"new_data": records("routers", 4), "replay_data": None, "parent_adapter_dir": None}
        return train_update(cfg, **{**args, **kw}, output_dir=tmp_path / "x", run_id="x")

    with pytest.raises(TrainingError, match="no new training rows"):
        run(new_data=records("routers", 4).slice(0, 0))
    with pytest.raises(TrainingError, match=r"new_data lacks column.*response"):
        run(new_data=records("routers", 4).drop_columns(["response"]))
    with pytest.raises(TrainingError, match="no LoRA adapter at"):
        run(parent_adapter_dir=tmp_path / "missing")
    cfg.model.base_path = tmp_path / "no-model"
    cfg.model.build_if_missing = False
    with pytest.raises(TrainingError, match=str(tmp_path / "no-model")):
        run()
