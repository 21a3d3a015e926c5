"""The base model: the user's own, or a small demo model built here (nothing can be downloaded).

The product story is "a pretrained base model + LoRA adapters", so the demo base gets a short warm-up
pretraining (``model.pretrain_steps``, full-parameter causal LM) on unlabelled support text from
:func:`clm_lib.modeling.corpus.support_corpus`: tickets of every product line without their triage answers, and desk
notes that pair teams and actions at random. It knows the words of the trade, as a real base model knows a
language, but not which ticket gets which answer: every accuracy point on a task is learned by its adapter.

Why not LoRA on a randomly initialised base: its frozen embeddings and output layer carry nothing, so the adapter
must learn spelling and triage at once, and it cannot make the frozen random output layer confident. Measured with
the default model (LoRA r=16, lr 5e-3, 150 steps, one task): random base 56 % exact match at a training loss of
4.6 nats (near uniform over the vocabulary, even where the argmax is right); 60 warm-up steps 87 % / 0.66;
150 warm-up steps 100 % / 0.46. With 150 steps the whole build (tokenizer + warm-up) takes about 20 s on two
shared cores.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

from clm_lib.config import ClmConfig
from clm_lib.errors import TrainingError
from clm_lib.modeling.architectures import check_context
from clm_lib.modeling.corpus import support_corpus
from clm_lib.modeling.tokenizer import train_tokenizer

try:
    from huggingface_hub.errors import StrictDataclassError  # transformers 5 validates configs with it
except ImportError:  # older huggingface_hub: configs raise ValueError only
    StrictDataclassError = ValueError

log = logging.getLogger(__name__)

BUILD_INFO = "clm_base.json"
"""Written next to a built demo model: how it was made, for lineage."""
CORPUS_SIZE = 6000
CORPUS_SEED = 10_000
"""Far from the demo stream's seeds, so the corpus tickets are not the training tickets."""


def _is_model(path: Path) -> bool:
    return (path / "config.json").exists()


def ensure_base_model(cfg: ClmConfig) -> Path:
    """The base model folder, building the demo model there first if it is missing and that is allowed.

    A folder that already holds a model is left alone: that is how users point clm at their own model.
    """
    path = cfg.base_model_dir
    if _is_model(path):
        return path
    if path.exists() and any(path.iterdir()):
        raise TrainingError(f"{path} is not empty but holds no model (config.json missing); clm will not overwrite it")
    if not cfg.model.build_if_missing:
        raise TrainingError(
            f"no base model at {path}; put a from_pretrained folder there or set model.build_if_missing"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built next to its destination and renamed into place, so a crash never leaves a half-written model and two
    # processes building at once both end up with one complete model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build_base_model(cfg, tmp)
        try:
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
        except OSError:
            if not _is_model(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def build_base_model(cfg: ClmConfig, out_dir: Path) -> Path:
    """Train the tokenizer, create the model from ``model.architecture``, warm it up, save both to ``out_dir``."""
    start = time.monotonic()
    torch.manual_seed(cfg.model.seed)
    arch = dict(cfg.model.architecture)
    model_type = arch.pop("model_type", None)
    if not model_type:
        raise TrainingError("model.architecture needs a model_type (e.g. llama)")
    if model_type not in CONFIG_MAPPING:
        raise TrainingError(
            f"model.architecture.model_type {model_type!r} is not a model type transformers "
            f"{transformers.__version__} knows (e.g. llama, gpt2, qwen2, mistral)"
        )
    corpus = support_corpus(CORPUS_SIZE, CORPUS_SEED)
    tokenizer = train_tokenizer(corpus, cfg.model.vocab_size)
    try:
        config = AutoConfig.for_model(
            model_type,
            **arch,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    except (ValueError, TypeError, StrictDataclassError) as exc:
        raise TrainingError(f"model.architecture is not a valid {model_type} config: {exc}") from None
    _check_settings(config, arch)
    check_context(cfg.model.max_length, config, "model.architecture")
    model = AutoModelForCausalLM.from_config(config)
    losses = pretrain(model, tokenizer, corpus, cfg)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    info = {
        "built_by": "clm_lib.modeling.build",
        "architecture": cfg.model.architecture,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": cfg.model.seed,
        "corpus": {"source": "clm_lib.modeling.corpus.support_corpus", "texts": CORPUS_SIZE, "seed": CORPUS_SEED},
        "pretrain_steps": cfg.model.pretrain_steps,
        "pretrain_loss": {"first": losses[0], "last": losses[-1]} if losses else None,
        "seconds": round(time.monotonic() - start, 1),
    }
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2))
    log.info("built demo base model in %s: %s", out_dir, info)
    return out_dir


def _check_settings(config, arch: dict) -> None:
    """Raise on a ``model.architecture`` key the model type does not use. transformers keeps an unknown keyword as a
    plain attribute, so a typo (``n_layers`` for GPT-2's ``n_layer``) would silently build the default 12 layers;
    keywords it reads (its parameters, ``attribute_map`` aliases, legacy ones it folds in such as ``rope_theta``)
    are not left behind like that."""
    config_class = type(config)
    default = vars(config_class())
    known = set(inspect.signature(config_class.__init__).parameters) | set(config_class.attribute_map)
    unknown = sorted(k for k in arch if k in vars(config) and k not in default and k not in known)
    if unknown:
        raise TrainingError(
            f"model.architecture.{unknown[0]} is not a {config.model_type} setting"
            + (f" (nor are {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
        )


def pretrain(model: torch.nn.Module, tokenizer, texts: list[str], cfg: ClmConfig) -> list[float]:
    """Warm-up causal-LM training of every parameter on unlabelled text; returns the loss per step."""
    steps = cfg.model.pretrain_steps
    if steps == 0:
        return []
    torch.set_num_threads(cfg.training.threads)
    batch_size = 32
    ids = tokenizer(
        [tokenizer.bos_token + t + tokenizer.eos_token for t in texts],
        add_special_tokens=False,
        truncation=True,
        max_length=cfg.model.max_length,
    )["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.model.pretrain_learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(cfg.model.seed)
    model.train()
    losses = []
    for step in range(steps):
        rows = torch.randint(len(ids), (batch_size,), generator=generator).tolist()
        width = max(len(ids[r]) for r in rows)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(ids[r])] = torch.tensor(ids[r])
            mask[i, : len(ids[r])] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        for group in optimizer.param_groups:
            # Short linear warmup then constant: a few hundred steps leave no room for a long schedule.
            group["lr"] = cfg.model.pretrain_learning_rate * min(1.0, (step + 1) / 20)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
    model.eval()
    return losses
