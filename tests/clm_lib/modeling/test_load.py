from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from clm_lib.errors import TrainingError
from clm_lib.modeling.load import load_model, resolve_device


def _adapter(tiny_base, out_dir):
    model, tok = load_model(tiny_base)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapter change the output
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return out_dir


def test_base_alone_and_with_adapter(tmp_path, tiny_base):
    adapter = _adapter(tiny_base, tmp_path / "adapter")
    base, tok = load_model(tiny_base)
    tuned, tok2 = load_model(tiny_base, adapter)
    assert not base.training and not tuned.training
    assert tok.get_vocab() == tok2.get_vocab()
    ids = tok("Support request:\nMy router is dead.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, tuned(input_ids=ids).logits)
    assert not any(p.requires_grad for p in tuned.parameters())
    trainable, _ = load_model(tiny_base, adapter, is_trainable=True)
    assert trainable.training
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "lora_" in n)


def test_missing_folders_are_clear_errors(tmp_path, tiny_base):
    with pytest.raises(TrainingError, match="no model at"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(TrainingError, match="no LoRA adapter at"):
        load_model(tiny_base, tmp_path / "nowhere")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA GPU"):
            resolve_device("cuda")
