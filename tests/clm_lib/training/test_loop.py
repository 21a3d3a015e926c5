from __future__ import annotations

import pytest
import torch

from clm_lib.errors import TrainingError
from clm_lib.training.loop import latest_checkpoint, train_loop
from clm_lib.training.strategies import Strategy

from .helpers import Spy, lora_state, make_context, records


def test_loss_decreases_on_a_tiny_set(tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps = 20
    tiny_cfg.training.warmup_steps = 2
    tiny_cfg.training.batch_size = 8
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 8))
    train_loop(ctx, [])
    first, last = sum(ctx.losses[:3]) / 3, sum(ctx.losses[-3:]) / 3
    assert last < 0.6 * first, ctx.losses
    assert ctx.step == 20 and ctx.seen == {"new": 20 * 8, "replay": 0}
    assert ctx.tokens_seen > 20 * 8 * 20
    assert not ctx.model.training


def test_resume_continues_at_the_saved_step_and_matches_an_uninterrupted_run(tmp_path, tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps = 6
    tiny_cfg.training.checkpoint_every = 2
    tiny_cfg.training.batch_size = 4
    data = records("routers", 10)

    straight = make_context(tiny_cfg, tiny_base, data)
    train_loop(straight, [], tmp_path / "a", "fp")

    crashed = make_context(tiny_cfg, tiny_base, data)
    with pytest.raises(RuntimeError, match="killed"):
        train_loop(crashed, [Spy(crash_at=5)], tmp_path / "b", "fp")
    assert latest_checkpoint(tmp_path / "b").name == "step-000004"

    spy = Spy()
    resumed = make_context(tiny_cfg, tiny_base, data)
    train_loop(resumed, [spy], tmp_path / "b", "fp")
    assert spy.steps == [4, 5]
    assert resumed.step == 6 and resumed.seen["new"] == 6 * 4
    assert len(resumed.losses) == 6
    expected, got = lora_state(straight.model), lora_state(resumed.model)
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["step-000006"]  # only the newest is kept

    # A finished run resumed again trains no more.
    again = Spy()
    train_loop(make_context(tiny_cfg, tiny_base, data), [again], tmp_path / "b", "fp")
    assert again.steps == []


def test_a_checkpoint_of_another_run_is_refused(tmp_path, tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps = 2
    tiny_cfg.training.checkpoint_every = 1
    data = records("routers", 4)
    train_loop(make_context(tiny_cfg, tiny_base, data), [], tmp_path, "run-a")
    with pytest.raises(TrainingError, match="belongs to a run with other data"):
        train_loop(make_context(tiny_cfg, tiny_base, data), [], tmp_path, "run-b")


def test_no_new_examples_is_an_error(tiny_cfg, tiny_base):
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 2).slice(0, 0))
    with pytest.raises(TrainingError, match="no new examples"):
        train_loop(ctx, [])


def test_extra_loss_of_a_strategy_is_added(tiny_cfg, tiny_base):
    class Penalty(Strategy):
        name = "penalty"

        def extra_loss(self, ctx, batch, outputs):
            assert batch.inputs["input_ids"].shape[0] == len(batch.examples)
            return torch.tensor(100.0)

    tiny_cfg.training.max_steps = 1
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 4))
    train_loop(ctx, [Penalty()])
    assert ctx.losses[0] > 100.0
