"""The per-update path on GPT-2-, Qwen2- and Mistral-style bases (``include/arch/``), built here at tiny size: build,
two short updates with replay + EWC + freezing, scores for every task, greedy generation; and per-task adapters."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow as pa
import pytest

from clm_lib.config import load_config
from clm_lib.evaluation.metrics import score_tasks
from clm_lib.modeling.build import ensure_base_model
from clm_lib.modeling.generate import complete
from clm_lib.modeling.load import load_model
from clm_lib.training.recipe import SUMMARY_FILE, train_update

from .helpers import records

ARCH = Path(__file__).resolve().parents[3] / "include" / "arch"
LLAMA_STYLE = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
TARGETS = {"gpt2": ["c_attn", "c_fc", "c_proj"], "qwen2": LLAMA_STYLE, "mistral": LLAMA_STYLE}
BLOCK_0 = {"gpt2": "transformer.h.0.", "qwen2": "model.layers.0.", "mistral": "model.layers.0."}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def arch_base(request, tmp_path_factory) -> tuple[str, Path]:
    """(model type, base folder): the include/arch config's base, built once per module with a short warm-up."""
    root = tmp_path_factory.mktemp(request.param)
    cfg = load_config(ARCH / f"{request.param}.yaml", environ={"CLM_HOME": str(root)})
    cfg.model.pretrain_steps = 20
    return request.param, ensure_base_model(cfg)


def _cfg(arch_base, tmp_path):
    arch, base = arch_base
    cfg = load_config(ARCH / f"{arch}.yaml", environ={"CLM_HOME": str(tmp_path / "home")})
    cfg.model.base_path = base
    cfg.training.max_steps = 4
    cfg.training.checkpoint_every = 4
    cfg.training.batch_size = 8
    return cfg


def _eval_data() -> pa.Table:
    return pa.concat_tables([records("routers", 6, seed=7), records("billing", 6, seed=7)])


def test_an_update_trains_scores_and_generates(arch_base, tmp_path):
    arch, base = arch_base
    cfg = _cfg(arch_base, tmp_path)
    cfg.training.ewc.enabled = True
    cfg.training.freeze.lowest_blocks = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = train_update(cfg, new_data=records("routers", 24), replay_data=None, parent_adapter_dir=None,
                             output_dir=tmp_path / "u1", run_id="u1")  # fmt: skip
    # The adapter is built right for the layer type, not corrected by PEFT with a warning.
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    summary = json.loads((tmp_path / "u1" / SUMMARY_FILE).read_text())
    # PEFT resolves all-linear to module names (full paths where a short name is ambiguous, as GPT-2's c_proj).
    assert sorted({m.rsplit(".", 1)[-1] for m in summary["lora"]["target_modules"]}) == TARGETS[arch]
    assert summary["lora"]["fan_in_fan_out"] is (arch == "gpt2")

    second = train_update(cfg, new_data=records("billing", 24), replay_data=records("routers", 16),
                          parent_adapter_dir=first.adapter_dir, output_dir=tmp_path / "u2", run_id="u2")  # fmt: skip
    assert second.steps == 4 and second.final_loss > 0
    assert second.replay_fraction > 0 and second.tasks == ["routers", "billing"]
    assert second.strategies["ewc"]["pulled_parameters"] > 0
    frozen = second.strategies["freezing"]["frozen_modules"]
    assert frozen and all(BLOCK_0[arch] in m for m in frozen)
    assert {m.rsplit(".", 1)[-1] for m in frozen} == set(TARGETS[arch])

    model, tok = load_model(base, second.adapter_dir)
    data = _eval_data()
    scores = score_tasks(model, tok, data, max_examples_per_task=6, batch_size=8, max_length=cfg.model.max_length)
    assert sorted(scores) == ["billing", "routers"]
    assert all(s.n == 6 and s.loss > 0 and 0 <= s.accuracy <= 100 for s in scores.values())
    prompts = data.column("prompt").to_pylist()[:4]
    out = complete(model, tok, prompts, max_new_tokens=12, max_length=cfg.model.max_length)
    assert len(out) == 4
    assert all(c.finish_reason in ("stop", "length") and c.completion_tokens <= 12 for c in out)
    # Left padding in a mixed batch must not change a greedy answer (GPT-2's positions are learned embeddings).
    assert complete(model, tok, prompts[-1:], max_new_tokens=12, max_length=cfg.model.max_length)[0] == out[-1]


def test_per_task_adapters_route_on_every_architecture(arch_base, tmp_path):
    _, base = arch_base
    cfg = _cfg(arch_base, tmp_path)
    cfg.training.adapters.mode = "per_task"
    first = train_update(cfg, new_data=records("routers", 24), replay_data=None, parent_adapter_dir=None,
                         output_dir=tmp_path / "u1", run_id="u1")  # fmt: skip
    second = train_update(cfg, new_data=records("billing", 24), replay_data=records("routers", 16),
                          parent_adapter_dir=first.adapter_dir, output_dir=tmp_path / "u2", run_id="u2")  # fmt: skip
    assert second.strategies["adapters"]["frozen"] == ["routers"]
    model, tok = load_model(base, second.adapter_dir)
    scores = score_tasks(model, tok, _eval_data(), max_examples_per_task=6, batch_size=8,
                         max_length=cfg.model.max_length)  # fmt: skip
    assert sorted(scores) == ["billing", "routers"]
    out = complete(model, tok, _eval_data().column("prompt").to_pylist()[:2], max_new_tokens=8)
    assert all(c.completion_tokens <= 8 for c in out)
