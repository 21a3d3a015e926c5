from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from clm_lib.errors import TrainingError
from clm_lib.training.context import STRATEGY_STATE_DIR
from clm_lib.training.data import collate
from clm_lib.training.loop import train_loop
from clm_lib.training.recipe import train_update
from clm_lib.training.strategies import build_strategies
from clm_lib.training.strategies.ewc import EWC, FISHER_FILE, META_FILE, empirical_fisher, normalize
from clm_lib.training.strategy_config import EwcConfig

from ..helpers import make_context, records


def _ewc(**settings) -> EWC:
    return EWC(EwcConfig(enabled=True, **settings))


def _trained_ctx(tiny_cfg, tiny_base, task="routers", steps=4):
    """A context whose LoRA has moved off its zero-initialised B matrices, so every gradient is non-zero."""
    tiny_cfg.training.max_steps, tiny_cfg.training.batch_size, tiny_cfg.training.warmup_steps = steps, 4, 0
    ctx = make_context(tiny_cfg, tiny_base, records(task, 8))
    train_loop(ctx, [])
    return ctx


def _save_state(ewc: EWC, ctx, adapter_dir):
    state_dir = adapter_dir / STRATEGY_STATE_DIR / "ewc"
    state_dir.mkdir(parents=True)
    ewc.after_save(ctx, state_dir)
    return state_dir


def test_fisher_is_the_mean_of_per_example_squared_gradients_not_a_squared_batch_gradient(tiny_cfg, tiny_base):
    ctx = _trained_ctx(tiny_cfg, tiny_base)
    examples = ctx.data["new"][:3]
    fisher = empirical_fisher(ctx.model, examples, ctx.pad_id, ctx.device)
    params = {n: p for n, p in ctx.model.named_parameters() if p.requires_grad}
    assert set(fisher) == set(params)

    # Reference: each example alone, its log-likelihood taken from the model's own (mean) token loss.
    ctx.model.eval()
    per_example = []
    for ex in examples:
        inputs = collate([ex], ctx.pad_id)
        tokens = int((inputs["labels"][:, 1:] != -100).sum())
        ctx.model.zero_grad()
        (-ctx.model(**inputs).loss * tokens).backward()
        per_example.append({n: p.grad.detach().clone() for n, p in params.items()})
    expected = {n: sum(g[n] ** 2 for g in per_example) / 3 for n in params}
    batch_grad_squared = {n: (sum(g[n] for g in per_example) / 3) ** 2 for n in params}
    for n in params:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-12), n
    total = sum(float(f.sum()) for f in fisher.values())
    assert total > 0
    assert sum(float(f.sum()) for f in batch_grad_squared.values()) < 0.9 * total  # Jensen: mean² < mean of squares
    assert ctx.model.training is False  # left as it was


def test_normalize_gives_strength_a_scale_independent_of_the_fisher_size():
    tiny = {"a": torch.tensor([1e-9, 3e-9]), "b": torch.tensor([[2e-9, 2e-9]])}
    by_mean = normalize(tiny, "mean")
    assert float(torch.cat([f.flatten() for f in by_mean.values()]).mean()) == pytest.approx(1.0)
    assert torch.allclose(by_mean["a"], torch.tensor([0.5, 1.5]))
    assert float(max(f.max() for f in normalize(tiny, "max").values())) == pytest.approx(1.0)
    assert normalize(tiny, "none")["a"] is tiny["a"]


def test_penalty_is_zero_at_the_anchor_and_grows_quadratically_away_from_it(tmp_path, tiny_cfg, tiny_base):
    ctx = _trained_ctx(tiny_cfg, tiny_base)
    first = _ewc(strength=2.0)
    first.before_training(ctx)
    assert first.extra_loss(ctx, None, None) is None  # no parent: nothing to protect yet
    first.after_training(ctx)
    _save_state(first, ctx, tmp_path / "parent")

    ctx.parent_adapter_dir = tmp_path / "parent"
    ewc = _ewc(strength=2.0)
    ewc.before_training(ctx)
    assert ewc.extra_loss(ctx, None, None).item() == 0.0
    fisher_sum = sum(float(f.sum()) for n, f in ewc.prior.items())
    with torch.no_grad():
        for p in (p for p in ctx.model.parameters() if p.requires_grad):
            p.add_(0.01)
    near = ewc.extra_loss(ctx, None, None).item()
    assert near == pytest.approx(2.0 / 2 * fisher_sum * 0.01**2, rel=1e-3)
    with torch.no_grad():
        for p in (p for p in ctx.model.parameters() if p.requires_grad):
            p.add_(0.01)
    assert ewc.extra_loss(ctx, None, None).item() == pytest.approx(4 * near, rel=1e-3)
    assert ewc.params()["prior_updates"] == 1 and ewc.params()["pulled_parameters"] == len(ewc.prior)


def test_fisher_accumulates_with_decay_and_round_trips_through_the_adapter(tmp_path, tiny_cfg, tiny_base):
    ctx = _trained_ctx(tiny_cfg, tiny_base)
    first = _ewc(decay=0.5, normalize="mean")
    first.before_training(ctx)
    first.after_training(ctx)
    state = _save_state(first, ctx, tmp_path / "p1")
    saved = load_file(str(state / FISHER_FILE))
    assert saved.keys() == first.accumulated.keys()
    assert all(torch.equal(saved[n], first.accumulated[n]) for n in saved)
    assert json.loads((state / META_FILE).read_text())["updates"] == 1
    # A parameter this update does not train (e.g. frozen) keeps its importance, decayed.
    save_file({**saved, "frozen.weight": torch.full((2,), 4.0)}, str(state / FISHER_FILE))

    ctx.parent_adapter_dir = tmp_path / "p1"
    ctx.data["new"] = make_context(tiny_cfg, tiny_base, records("billing", 8)).data["new"]
    second = _ewc(decay=0.5, normalize="mean", fisher_examples=100)
    second.before_training(ctx)
    assert all(torch.equal(second.prior[n], saved[n]) for n in saved)  # loaded as saved
    second.after_training(ctx)
    fresh = normalize(empirical_fisher(ctx.model, ctx.data["new"], ctx.pad_id, ctx.device), "mean")
    for n, f in fresh.items():
        assert torch.allclose(second.accumulated[n], 0.5 * saved[n] + f, rtol=1e-4, atol=1e-7), n
    assert torch.equal(second.accumulated["frozen.weight"], torch.full((2,), 2.0))
    state2 = _save_state(second, ctx, tmp_path / "p2")
    assert json.loads((state2 / META_FILE).read_text())["updates"] == 2


def test_checkpoint_state_restores_the_same_penalty(tmp_path, tiny_cfg, tiny_base):
    ctx = _trained_ctx(tiny_cfg, tiny_base)
    first = _ewc()
    first.before_training(ctx)
    first.after_training(ctx)
    _save_state(first, ctx, tmp_path / "parent")
    ctx.parent_adapter_dir = tmp_path / "parent"
    ewc = _ewc(strength=3.0)
    ewc.before_training(ctx)
    torch.save(ewc.state_dict(), tmp_path / "state.pt")

    with torch.no_grad():
        for p in (p for p in ctx.model.parameters() if p.requires_grad):
            p.mul_(1.1)
    restored = _ewc(strength=3.0)
    ctx.parent_adapter_dir = None  # what a resumed run would find must come from the checkpoint alone
    restored.before_training(ctx)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.extra_loss(ctx, None, None).item() == pytest.approx(ewc.extra_loss(ctx, None, None).item())
    assert restored.extra_loss(ctx, None, None).item() > 0


def test_a_fisher_of_another_shape_is_refused(tmp_path, tiny_cfg, tiny_base):
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 4))
    name, p = next((n, p) for n, p in ctx.model.named_parameters() if p.requires_grad)
    state = tmp_path / "parent" / STRATEGY_STATE_DIR / "ewc"
    state.mkdir(parents=True)
    save_file({name: torch.ones(p.shape[0] + 1, *p.shape[1:])}, str(state / FISHER_FILE))
    (state / META_FILE).write_text("{}")
    ctx.parent_adapter_dir = tmp_path / "parent"
    with pytest.raises(TrainingError, match="adapter changed shape"):
        _ewc().before_training(ctx)


def test_ewc_holds_parameters_near_the_parent_across_updates(tmp_path, tiny_cfg):
    tiny_cfg.training.max_steps, tiny_cfg.training.checkpoint_every = 8, 8
    tiny_cfg.training.replay.enabled = False
    tiny_cfg.training.ewc.enabled = True
    tiny_cfg.training.ewc.fisher_examples = 16
    assert [s.name for s in build_strategies(tiny_cfg)] == ["ewc"]

    def update(name, data, parent, strength):
        tiny_cfg.training.ewc.strength = strength
        return train_update(
            tiny_cfg,
            new_data=data,
            replay_data=None,
            parent_adapter_dir=parent,
            output_dir=tmp_path / name,
            run_id=name,
        )

    parent = update("p", records("routers", 32), None, 0.0)
    assert parent.strategies["ewc"]["prior_updates"] == 0
    assert (parent.adapter_dir / STRATEGY_STATE_DIR / "ewc" / FISHER_FILE).exists()
    anchor = load_file(str(parent.adapter_dir / "adapter_model.safetensors"))

    def drift(result):
        moved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
        return sum(float((moved[n] - anchor[n]).pow(2).sum()) for n in anchor)

    free = update("free", records("billing", 32), parent.adapter_dir, 0.0)
    held = update("held", records("billing", 32), parent.adapter_dir, 1000.0)
    assert held.strategies["ewc"]["prior_updates"] == 1 and held.strategies["ewc"]["last_penalty"] > 0
    assert drift(held) < 0.5 * drift(free)
