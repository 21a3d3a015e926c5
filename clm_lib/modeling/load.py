"""Load a base model and, optionally, a LoRA adapter on top, from local folders only."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from clm_lib.errors import TrainingError
from clm_lib.modeling.prompt import PROMPT_ATTR, PromptFormat, load_prompt_config
from clm_lib.modeling.task_adapters import load_task_adapters, read_manifest

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("training.device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer_config.json").exists() or (path / "tokenizer.json").exists()


def load_model(
    base_dir: str | Path,
    adapter_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    is_trainable: bool = False,
):
    """(model, tokenizer): the base model from ``base_dir``, with the adapter of ``adapter_dir`` if given.

    The tokenizer is read from the adapter folder when it holds one (clm saves it there, so an adapter is
    self-describing), else from the base folder. Nothing is fetched from a hub. The model is in eval mode
    unless ``is_trainable`` and carries the adapter's prompt format (``clm_lib.modeling.prompt``). A per-task
    adapter folder (``clm_lib.modeling.task_adapters``) loads every task's adapter, with the routing that sends
    each prompt to its own.
    """
    base_dir = Path(base_dir)
    device = torch.device(device)
    if not (base_dir / "config.json").exists():
        raise TrainingError(f"no model at {base_dir} (config.json missing)")
    tok_dir = Path(adapter_dir) if adapter_dir is not None and _has_tokenizer(Path(adapter_dir)) else base_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot load the model at {base_dir}: {exc}") from None
    if adapter_dir is not None and read_manifest(adapter_dir) is not None:
        model = load_task_adapters(model, adapter_dir, is_trainable=is_trainable)
    elif adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").exists():
            raise TrainingError(f"no LoRA adapter at {adapter_dir} (adapter_config.json missing)")
        try:
            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"cannot load the adapter at {adapter_dir} onto {base_dir}: {exc}") from None
    # The adapter learned one prompt format; checked against the tokenizer now, not at the first request.
    prompt = load_prompt_config(adapter_dir)
    PromptFormat(tokenizer, prompt)
    setattr(model, PROMPT_ATTR, prompt)
    model.to(device)
    model.train(is_trainable)
    return model, tokenizer
