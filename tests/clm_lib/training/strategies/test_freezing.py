from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from clm_lib.config import load_config
from clm_lib.errors import ConfigError, TrainingError
from clm_lib.modeling.load import load_model
from clm_lib.training.loop import train_loop
from clm_lib.training.strategies import Strategy, build_strategies
from clm_lib.training.strategies.freezing import Freezing
from clm_lib.training.strategy_config import FreezeConfig

from ..helpers import lora_state, make_context, records


def _train(tiny_cfg, tiny_base, **freeze):
    tiny_cfg.training.max_steps = 3
    tiny_cfg.training.batch_size = 4
    tiny_cfg.training.warmup_steps = 0
    tiny_cfg.training.weight_decay = 0.1  # frozen parameters must not even decay
    tiny_cfg.training.freeze = FreezeConfig(**freeze)
    strategies = build_strategies(tiny_cfg)
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 8))
    before = lora_state(ctx.model)
    train_loop(ctx, strategies)
    return ctx, strategies[0], before


def _changed(before: dict[str, torch.Tensor], model) -> set[str]:
    now = dict(model.named_parameters())
    return {n for n, t in before.items() if not torch.equal(t, now[n].detach())}


def test_frozen_blocks_stay_unchanged_while_the_others_train(tiny_cfg, tiny_base):
    ctx, freezing, before = _train(tiny_cfg, tiny_base, lowest_blocks=1)
    assert isinstance(freezing, Freezing)
    block0 = {n for n in before if ".layers.0." in n}
    # lora_B starts at zero, so a lora_A only moves once its lora_B has: compare B matrices and all of block 1.
    assert block0 and not (_changed(before, ctx.model) & block0)
    assert {n for n in before if ".layers.1." in n and "lora_B" in n} <= _changed(before, ctx.model)
    in_optimizer = {id(p) for g in ctx.optimizer.param_groups for p in g["params"]}
    named = dict(ctx.model.named_parameters())
    assert not any(id(named[n]) in in_optimizer for n in block0)
    params = freezing.params()
    assert params["frozen_parameters"] == len(block0) == 14  # 7 linear layers x (A, B)
    assert params["frozen_modules"][0] == "base_model.model.model.layers.0.self_attn.q_proj"
    assert len(params["frozen_modules"]) == 7 and params["trainable_numel"] > 0


def test_patterns_freeze_matching_parameters(tiny_cfg, tiny_base):
    ctx, freezing, before = _train(tiny_cfg, tiny_base, patterns=[r"self_attn\..*lora_B"])
    attn_b = {n for n in before if "self_attn" in n and "lora_B" in n}
    assert set(freezing.frozen) == attn_b and len(attn_b) == 8
    changed = _changed(before, ctx.model)
    assert not (changed & attn_b) and {n for n in before if "mlp" in n and "lora_B" in n} <= changed


def test_embeddings_are_frozen_when_they_carry_an_adapter(tiny_cfg, tiny_base):
    model, _ = load_model(tiny_base)
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["embed_tokens", "q_proj"], task_type="CAUSAL_LM"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    chosen = Freezing(FreezeConfig(embeddings=True)).select(model, trainable)
    assert chosen and all("embed_tokens.lora_embedding" in n for n in chosen)
    assert len(chosen) == 2
    # With adapters on linear layers only, the embeddings have nothing to freeze: not an error.
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 4))
    trainable = [n for n, p in ctx.model.named_parameters() if p.requires_grad]
    assert Freezing(FreezeConfig(embeddings=True)).select(ctx.model, trainable) == []


def test_settings_that_cannot_apply_are_errors_naming_the_field(tiny_cfg, tiny_base):
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 4))
    with pytest.raises(TrainingError, match=r"training\.freeze\.lowest_blocks is 3 but the model has 2 blocks"):
        Freezing(FreezeConfig(lowest_blocks=3)).before_training(ctx)
    with pytest.raises(TrainingError, match=r"training\.freeze\.patterns: 'qproj' matches no trainable parameter"):
        Freezing(FreezeConfig(patterns=["qproj"])).before_training(ctx)
    with pytest.raises(TrainingError, match="freezes every trainable parameter"):
        Freezing(FreezeConfig(lowest_blocks=2)).before_training(ctx)
    assert all(p.requires_grad for n, p in ctx.model.named_parameters() if "lora" in n)  # errors freeze nothing


def test_a_bad_pattern_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"training\.freeze\.patterns.*not a regular expression"):
        load_config(environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__FREEZE__PATTERNS": "['layers.(0']"})


def test_freezing_is_built_first_and_only_when_asked(tiny_cfg):
    assert "freezing" not in [s.name for s in build_strategies(tiny_cfg)]
    tiny_cfg.training.freeze.lowest_blocks = 1
    assert [s.name for s in build_strategies(tiny_cfg)] == ["freezing", "replay"]


def test_a_run_with_frozen_blocks_resumes_from_its_checkpoint(tmp_path, tiny_cfg, tiny_base):
    class Crash(Strategy):
        name = "crash"

        def after_step(self, ctx):
            if ctx.step == 3:
                raise RuntimeError("killed")

    tiny_cfg.training.max_steps, tiny_cfg.training.checkpoint_every, tiny_cfg.training.batch_size = 4, 2, 4
    tiny_cfg.training.freeze.lowest_blocks = 1
    data = records("routers", 8)
    straight = make_context(tiny_cfg, tiny_base, data)
    train_loop(straight, build_strategies(tiny_cfg), tmp_path / "a", "fp")
    with pytest.raises(RuntimeError, match="killed"):
        train_loop(
            make_context(tiny_cfg, tiny_base, data), [*build_strategies(tiny_cfg), Crash()], tmp_path / "b", "fp"
        )
    resumed = make_context(tiny_cfg, tiny_base, data)
    train_loop(resumed, build_strategies(tiny_cfg), tmp_path / "b", "fp")  # optimizer state of the unfrozen only
    expected, got = lora_state(straight.model), lora_state(resumed.model)
    assert expected.keys() == got.keys() and all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
