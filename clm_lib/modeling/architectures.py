"""What clm must know about a decoder's architecture, read from the model itself rather than from its model type.

Llama-, GPT-2-, Qwen2- and Mistral-style decoders all go through the same build, LoRA, training, scoring and
generation code (``include/arch/`` has a config of each). Where they differ in a way that code sees:

- **Layer type.** GPT-2 keeps its projections (``c_attn``, ``c_proj``, ``c_fc``) in transformers' ``Conv1D``, whose
  weight is stored ``(in, out)``, the transpose of ``nn.Linear``. LoRA must be told (``fan_in_fan_out``): PEFT
  would correct the flag itself, with a warning per adapter, so :func:`lora_config` sets it from the layers.
- **Context length.** GPT-2 calls it ``n_positions``; every config answers to ``max_position_embeddings`` through
  its ``attribute_map``. Learned absolute positions (GPT-2) have no embedding past it, so a longer example is an
  index error, not a degraded answer: :func:`check_context` says which setting to change instead.
- **Where the blocks are** (``model.layers``, ``transformer.h``): found by structure in
  ``clm_lib.training.strategies.freezing``, not here.

Light to import: torch and transformers are imported by the calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clm_lib.errors import TrainingError

if TYPE_CHECKING:
    from clm_lib.config import LoraConfig


def context_length(config: Any) -> int | None:
    """Positions the model can attend to, or ``None`` when its config does not say."""
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context(max_length: int, config: Any, where: str) -> None:
    """Raise when ``model.max_length`` exceeds the context of the model described by ``config`` (found at ``where``)."""
    limit = context_length(config)
    if limit is not None and max_length > limit:
        raise TrainingError(
            f"model.max_length is {max_length} but the {config.model_type} model at {where} has "
            f"{limit} positions (max_position_embeddings, n_positions in GPT-2): lower model.max_length or raise "
            "the model's context"
        )


def transposed_linear(model: Any) -> bool:
    """Whether the model's linear layers store their weight ``(in, out)`` (transformers' ``Conv1D``, GPT-2).

    The output layer is left out (GPT-2's is an ``nn.Linear`` tied to the embeddings, and ``all-linear`` never
    adapts it), and so are LoRA's own layers, so the answer is the same before and after adapters are attached.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings()
    kinds = {
        isinstance(module, Conv1D)
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not output and "lora_" not in name
    }
    return kinds == {True}


def lora_config(lora: LoraConfig, model: Any):
    """The PEFT ``LoraConfig`` of ``training.lora`` for ``model``."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        fan_in_fan_out=transposed_linear(model),
        task_type="CAUSAL_LM",
    )


def lora_targets(model: Any, adapter: str | None = None) -> list[str]:
    """The module names an attached adapter targets, as PEFT resolved them (``all-linear`` becomes real names)."""
    configs = model.peft_config
    targets = configs[adapter or next(iter(configs))].target_modules
    return sorted([targets] if isinstance(targets, str) else targets)
