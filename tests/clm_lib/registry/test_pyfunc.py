from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from clm_lib.demo.stream import generate_task
from clm_lib.modeling.generate import generate
from clm_lib.modeling.task_adapters import adapter_name, routing_of
from clm_lib.registry.pyfunc import ClmModel, _prompts
from clm_lib.training.recipe import train_update


def _records(task: str, n: int, seed: int = 0) -> pa.Table:
    rows = generate_task(task, n, seed)
    return pa.Table.from_pylist([{"id": hashlib.sha256(r["prompt"].encode()).hexdigest(), **r} for r in rows])


def test_inputs_carry_optional_task_ids():
    assert _prompts("hi") == (["hi"], None)
    assert _prompts(["a", "b"]) == (["a", "b"], None)
    assert _prompts({"prompt": ["a", "b"], "task": ["x", ""]}) == (["a", "b"], ["x", None])
    frame = pd.DataFrame({"prompt": ["a", "b"], "task": ["x", None]})
    assert _prompts(frame) == (["a", "b"], ["x", None])
    with pytest.raises(ValueError, match="2 prompts but 1 task ids"):
        _prompts({"prompt": ["a", "b"], "task": ["x"]})


def test_a_per_task_version_answers_each_prompt_with_its_task_adapter(tmp_path, tiny_cfg):
    tiny_cfg.training.max_steps = 6
    tiny_cfg.training.adapters.mode = "per_task"
    new = pa.concat_tables([_records("routers", 30), _records("billing", 30)])
    result = train_update(
        tiny_cfg, new_data=new, replay_data=None, parent_adapter_dir=None, output_dir=tmp_path, run_id="p"
    )
    served = ClmModel()
    served.load_context(
        SimpleNamespace(artifacts={"base": str(tiny_cfg.base_model_dir), "adapter": str(result.adapter_dir)},
                        model_config={"max_new_tokens": 8})
    )  # fmt: skip
    routing = routing_of(served.model)
    assert routing is not None and set(routing.adapters) == {"routers", "billing"}
    prompts = [r["prompt"] for r in generate_task("routers", 2, 5) + generate_task("billing", 2, 5)]
    tasks = ["routers", "routers", "billing", "billing"]
    assert routing.assign(prompts) == [adapter_name(t) for t in tasks]
    by_router = served.predict(None, prompts)
    by_task = served.predict(None, pd.DataFrame({"prompt": prompts, "task": tasks}))
    assert by_router == by_task == generate(served.model, served.tokenizer, prompts, max_new_tokens=8, tasks=tasks)
    # A task id the caller gives wins over the router; an unknown one falls back to it.
    swapped = ["billing", "billing", "routers", "unknown"]
    assert routing.assign(prompts, swapped) == [adapter_name(t) for t in ["billing", "billing", "routers", "billing"]]
