from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from clm_lib.config import load_config
from clm_lib.errors import TrainingError
from clm_lib.modeling.build import BUILD_INFO, ensure_base_model

TINY = Path(__file__).resolve().parents[3] / "include" / "tiny.yaml"


def _cfg(tmp_path, **env):
    environ = {"CLM_HOME": str(tmp_path), **{f"CLM__{k.upper()}": str(v) for k, v in env.items()}}
    return load_config(TINY, environ=environ)


def test_built_model_loads_with_from_pretrained_and_was_warmed_up(tiny_base):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(tiny_base), local_files_only=True)
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    info = json.loads((tiny_base / BUILD_INFO).read_text())
    assert info["pretrain_loss"]["last"] < info["pretrain_loss"]["first"] - 1.0
    ids = tok("Support request:\nMy router is dead.", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(input_ids=ids).logits).all()


def test_build_is_deterministic(tmp_path):
    small = {"model__pretrain_steps": 3, "model__architecture__hidden_size": 32, "model__vocab_size": 300}
    a = ensure_base_model(_cfg(tmp_path / "a", **small))
    b = ensure_base_model(_cfg(tmp_path / "b", **small))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert not [p for p in a.parent.iterdir() if p.name.startswith(".")]  # no temporary build folder left


def test_an_existing_model_is_left_alone(tmp_path, tiny_base):
    cfg = _cfg(tmp_path)
    shutil.copytree(tiny_base, cfg.base_model_dir)
    weights = cfg.base_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_base_model(cfg) == cfg.base_model_dir
    assert weights.stat().st_mtime_ns == before


def test_missing_model_without_permission_to_build_names_the_path(tmp_path):
    cfg = _cfg(tmp_path, model__build_if_missing="false")
    with pytest.raises(TrainingError, match=str(cfg.base_model_dir)):
        ensure_base_model(cfg)


def test_a_folder_of_other_files_is_not_overwritten(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.base_model_dir.mkdir(parents=True)
    (cfg.base_model_dir / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not empty but holds no model"):
        ensure_base_model(cfg)
    assert (cfg.base_model_dir / "notes.txt").read_text() == "mine"


def test_an_invalid_architecture_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, model__architecture__model_type="no_such_model")
    with pytest.raises(TrainingError, match="no_such_model"):
        ensure_base_model(cfg)
