from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from clm_lib.errors import TrainingError
from clm_lib.evaluation.metrics import score_examples, score_tasks
from clm_lib.modeling.generate import generate
from clm_lib.modeling.load import load_model
from clm_lib.modeling.task_adapters import MANIFEST, adapter_name, routing_of
from clm_lib.training.adapters import remove_task_adapter
from clm_lib.training.recipe import SUMMARY_FILE, train_update
from clm_lib.training.strategies.orthogonality import orthogonality_penalty

from .helpers import records


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.training.max_steps = 10
    tiny_cfg.training.checkpoint_every = 10
    tiny_cfg.training.adapters.mode = "per_task"
    tiny_cfg.training.adapters.router.examples_per_task = 40
    return tiny_cfg


def _train(cfg, out, new, replay=None, parent=None):
    return train_update(
        cfg, new_data=new, replay_data=replay, parent_adapter_dir=parent, output_dir=out, run_id=out.name
    )


def _weights(adapter_dir, task) -> dict[str, torch.Tensor]:
    return load_file(str(adapter_dir / "adapters" / adapter_name(task) / "adapter_model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def two_tasks(tmp_path, cfg):
    """routers learnt first, then billing on top of it (with replayed routers records)."""
    first = _train(cfg, tmp_path / "a", records("routers", 40))
    second = _train(
        cfg, tmp_path / "b", records("billing", 40), replay=records("routers", 20, seed=5), parent=first.adapter_dir
    )
    return first, second


def test_training_a_new_task_leaves_the_other_adapters_unchanged(tmp_path, cfg, two_tasks):
    first, second = two_tasks
    assert _same(_weights(first.adapter_dir, "routers"), _weights(second.adapter_dir, "routers"))
    assert any(w.abs().sum() > 0 for k, w in _weights(second.adapter_dir, "billing").items() if "lora_B" in k)
    manifest = json.loads((second.adapter_dir / MANIFEST).read_text())
    assert manifest["adapters"] == {"routers": "task_routers", "billing": "task_billing"}
    adapters = second.strategies["adapters"]
    assert (adapters["trained"], adapters["frozen"]) == (["billing"], ["routers"])
    assert adapters["router_tasks"] == ["routers", "billing"] and adapters["router_accuracy"] >= 0.9
    # Replayed records of a frozen task would train nothing: they are not mixed in.
    assert second.replay_rows == 0 and second.replay_fraction == 0.0
    summary = json.loads((tmp_path / "b" / SUMMARY_FILE).read_text())
    assert summary["strategies"]["adapters"]["router_held_out"] > 0

    # New data of a known task continues its adapter; the other one stays as it was.
    # Replayed routers records join its adapter's training; replayed billing records would train nothing.
    replay = pa.concat_tables([records("routers", 10, seed=4), records("billing", 10, seed=4)])
    third = _train(cfg, tmp_path / "c", records("routers", 40, seed=9), replay=replay, parent=second.adapter_dir)
    assert third.replay_rows == 10 and third.replay_fraction > 0
    assert not _same(_weights(second.adapter_dir, "routers"), _weights(third.adapter_dir, "routers"))
    assert _same(_weights(second.adapter_dir, "billing"), _weights(third.adapter_dir, "billing"))
    assert third.strategies["adapters"]["router_tasks"] == ["routers", "billing"]


def test_inference_routes_each_prompt_to_its_adapter(cfg, two_tasks):
    _, second = two_tasks
    model, tok = load_model(cfg.base_model_dir, second.adapter_dir)
    routing = routing_of(model)
    assert routing is not None and set(routing.adapters) == {"routers", "billing"}
    held_out = pa.concat_tables([records("routers", 12, seed=21), records("billing", 12, seed=21)])
    prompts, tasks = held_out.column("prompt").to_pylist(), held_out.column("task").to_pylist()
    assert routing.assign(prompts) == [adapter_name(t) for t in tasks]  # the router, no task ids

    # One mixed batch gives what each adapter gives on its own.
    mixed = score_examples(model, tok, held_out, batch_size=24, route_by_task=True)
    for task in ("routers", "billing"):
        model.set_adapter(adapter_name(task))
        own = [s for s in _single_adapter_scores(model, tok, held_out) if s.task == task]
        assert [round(s.nll, 4) for s in own] == [round(s.nll, 4) for s in mixed if s.task == task]
    # Generation follows the same routing, by task id or by the router.
    assert generate(model, tok, prompts[:2] + prompts[-2:]) == generate(
        model, tok, prompts[:2] + prompts[-2:], tasks=tasks[:2] + tasks[-2:]
    )
    assert score_tasks(model, tok, held_out, max_examples_per_task=12, batch_size=8).keys() == {"routers", "billing"}


def _single_adapter_scores(model, tok, table):
    routing = model.clm_routing
    del model.clm_routing  # score with whichever adapter is active
    try:
        return score_examples(model, tok, table, batch_size=24)
    finally:
        model.clm_routing = routing


def test_save_and_load_round_trip_gives_the_trained_model(tmp_path, cfg):
    new = pa.concat_tables([records("routers", 30), records("billing", 30)])
    result = _train(cfg, tmp_path / "both", new)  # two new tasks in one update: both adapters learn
    loaded, _ = load_model(cfg.base_model_dir, result.adapter_dir)
    for task in ("routers", "billing"):
        saved = _weights(result.adapter_dir, task)
        live = {n: p for n, p in loaded.named_parameters() if f".{adapter_name(task)}." in n}
        assert len(live) == len(saved) > 0
        assert all(any(torch.equal(p, w) for w in saved.values()) for p in live.values())
        assert any(w.abs().sum() > 0 for k, w in saved.items() if "lora_B" in k)
    assert result.strategies["adapters"]["trained"] == ["routers", "billing"]


def test_remove_a_task_adapter_reports_the_impact_on_the_others(tmp_path, cfg, tiny_base):
    new = pa.concat_tables([records(t, 30) for t in ("routers", "billing", "thermostats")])
    adapter_dir = _train(cfg, tmp_path / "three", new).adapter_dir
    held_out = pa.concat_tables([records(t, 10, seed=33) for t in ("routers", "billing", "thermostats")])
    report = remove_task_adapter(adapter_dir, "billing", base_dir=tiny_base, eval_data=held_out, max_length=96)
    assert report.remaining == ["routers", "thermostats"] and report.adapter == "task_billing"
    assert report.before.keys() == report.after.keys() == {"routers", "thermostats"}
    assert report.change == {t: round(report.after[t] - report.before[t], 2) for t in report.after}
    assert not (adapter_dir / "adapters" / "task_billing").exists()
    model, _ = load_model(tiny_base, adapter_dir)
    assert set(routing_of(model).adapters) == {"routers", "thermostats"}
    assert set(routing_of(model).router.tasks) == {"routers", "thermostats"}
    assert "task_billing" not in model.peft_config

    with pytest.raises(TrainingError, match="no adapter for task 'billing'"):
        remove_task_adapter(adapter_dir, "billing", base_dir=tiny_base)
    remove_task_adapter(adapter_dir, "routers", base_dir=tiny_base)
    with pytest.raises(TrainingError, match="the only adapter"):
        remove_task_adapter(adapter_dir, "thermostats", base_dir=tiny_base)


def test_shared_and_per_task_adapters_do_not_mix(tmp_path, cfg):
    cfg.training.adapters.mode = "shared"
    shared = _train(cfg, tmp_path / "shared", records("routers", 20)).adapter_dir
    with pytest.raises(TrainingError, match="holds one shared adapter"):
        remove_task_adapter(shared, "routers", base_dir=cfg.base_model_dir)
    cfg.training.adapters.mode = "per_task"
    with pytest.raises(TrainingError, match=r"is a shared adapter, but training\.adapters\.mode is per_task"):
        _train(cfg, tmp_path / "x", records("billing", 20), parent=shared)
    per_task = _train(cfg, tmp_path / "per-task", records("routers", 20)).adapter_dir
    cfg.training.adapters.mode = "shared"
    with pytest.raises(TrainingError, match=r"holds per-task adapters, but training\.adapters\.mode is shared"):
        _train(cfg, tmp_path / "y", records("billing", 20), parent=per_task)


# --- orthogonality --------------------------------------------------------------------------------------------


def _two_adapters(tiny_base):
    model, _ = load_model(tiny_base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lora, adapter_name="task_a")
    model.add_adapter("task_b", lora)
    return model


def _set_a(model, adapter, rows):
    for name, p in model.named_parameters():
        if f"lora_A.{adapter}." in name:
            with torch.no_grad():
                p.copy_(rows(p.shape))


def test_orthogonality_penalty_is_zero_for_orthogonal_subspaces_and_positive_otherwise(tiny_base):
    model = _two_adapters(tiny_base)
    # task_a reads input dimensions 0-3, task_b dimensions 4-7: orthogonal subspaces.
    _set_a(model, "task_a", lambda shape: torch.eye(shape[0], shape[1]))
    _set_a(model, "task_b", lambda shape: torch.roll(torch.eye(shape[0], shape[1]), shifts=shape[0], dims=1))
    assert orthogonality_penalty(model, "task_a", ["task_a", "task_b"]).item() == 0.0
    _set_a(model, "task_b", lambda shape: torch.eye(shape[0], shape[1]) + 0.1)
    penalty = orthogonality_penalty(model, "task_a", ["task_b"])
    assert penalty.item() > 0
    penalty.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_A" in n}
    assert all(g is not None for n, g in grads.items() if ".task_a." in n)
    assert all(g is None for n, g in grads.items() if ".task_b." in n)  # the other adapter is a constant


def test_the_orthogonality_strategy_pulls_a_new_adapter_away_from_the_others(tmp_path, cfg):
    first = _train(cfg, tmp_path / "a", records("routers", 30)).adapter_dir

    def overlap(weight: float) -> float:
        cfg.training.adapters.orthogonality = weight
        out = tmp_path / f"b-{weight}"
        result = _train(cfg, out, records("billing", 30), parent=first)
        model, _ = load_model(cfg.base_model_dir, result.adapter_dir)
        return orthogonality_penalty(model, "task_billing", ["task_routers"]).item(), result

    plain, _ = overlap(0.0)
    penalised, result = overlap(1.0)
    assert penalised < 0.5 * plain
    assert result.strategies["orthogonality"]["weight"] == 1.0
