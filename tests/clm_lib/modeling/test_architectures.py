"""What differs between architectures (clm_lib/modeling/architectures.py), and the include/arch example configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from clm_lib.config import LoraConfig, load_config
from clm_lib.errors import TrainingError
from clm_lib.modeling.architectures import check_context, context_length, lora_config, lora_targets, transposed_linear
from clm_lib.modeling.build import ensure_base_model

INCLUDE = Path(__file__).resolve().parents[3] / "include"
SMALL = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=64),
}


def _model(model_type: str):
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=300, **SMALL[model_type]))


@pytest.mark.parametrize("name", ["gpt2", "qwen2", "mistral"])
def test_the_example_configs_differ_from_tiny_only_in_the_architecture(name):
    tiny = yaml.safe_load((INCLUDE / "tiny.yaml").read_text())
    other = yaml.safe_load((INCLUDE / "arch" / f"{name}.yaml").read_text())
    assert other["model"]["architecture"]["model_type"] == name
    for doc in (tiny, other):
        del doc["model"]["architecture"], doc["model"]["base_path"]
    assert other == tiny
    load_config(INCLUDE / "arch" / f"{name}.yaml", environ={"CLM_HOME": "/nonexistent"})  # validates


def test_gpt2_layers_are_transposed_and_lora_is_told_so():
    gpt2, llama = _model("gpt2"), _model("llama")
    assert transposed_linear(gpt2) and not transposed_linear(llama)
    lora = LoraConfig(r=2, alpha=4)
    assert lora_config(lora, gpt2).fan_in_fan_out and not lora_config(lora, llama).fan_in_fan_out
    peft = get_peft_model(gpt2, lora_config(lora, gpt2))
    assert transposed_linear(peft)  # LoRA's own nn.Linear layers do not change the answer
    assert {t.rsplit(".", 1)[-1] for t in lora_targets(peft)} == {"c_attn", "c_proj", "c_fc"}
    assert {t.rsplit(".", 1)[-1] for t in lora_targets(get_peft_model(llama, lora_config(lora, llama)))} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # fmt: skip


def test_context_length_reads_gpt2_n_positions():
    config = AutoConfig.for_model("gpt2", n_positions=64)
    assert context_length(config) == 64
    check_context(64, config, "here")
    with pytest.raises(TrainingError, match=r"model.max_length is 65 .* 64 positions"):
        check_context(65, config, "here")


def _tiny(tmp_path, architecture: dict):
    cfg = load_config(INCLUDE / "tiny.yaml", environ={"CLM_HOME": str(tmp_path)})
    cfg.model.architecture = architecture
    cfg.model.pretrain_steps = 0
    cfg.model.vocab_size = 300
    return cfg


def test_a_context_shorter_than_max_length_fails_the_build(tmp_path):
    cfg = _tiny(tmp_path, {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 4, "n_positions": 64})
    with pytest.raises(TrainingError, match=r"model\.max_length is 96"):
        ensure_base_model(cfg)


def test_a_misspelt_architecture_setting_is_named(tmp_path):
    cfg = _tiny(tmp_path, {"model_type": "gpt2", "n_embd": 32, "n_layers": 1, "n_head": 4, "n_positions": 128})
    with pytest.raises(TrainingError, match=r"model.architecture.n_layers is not a gpt2 setting"):
        ensure_base_model(cfg)


def test_legacy_rope_settings_are_not_taken_for_typos(tmp_path):
    cfg = _tiny(tmp_path, {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                           "num_attention_heads": 4, "max_position_embeddings": 128, "rope_theta": 5e5})  # fmt: skip
    assert (ensure_base_model(cfg) / "config.json").exists()
