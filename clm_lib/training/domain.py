"""Domain adaptation: continued pretraining of a LoRA adapter on unlabelled in-domain text, merged into a new base.

Task adapters learn a task; they cannot teach the base the words of a new domain from a few hundred labelled
examples. Before task adapters are trained on a new domain, :func:`adapt_domain` trains one LoRA adapter with the
plain causal-LM loss on raw text of that domain (no prompt template: every token is labelled), then merges it into
a copy of the base weights, saved with ``save_pretrained``. The result is a *domain-adapted base*: a folder that
``from_pretrained`` reads like any other, so ``model.base_path`` can point at it and every later task adapter, the
loading code and serving work unchanged. Top to bottom: setup (read and chunk the text, load the base) → train (the
one training loop, :func:`clm_lib.training.loop.train_loop`, with the freezing strategy when
``training.domain.freeze`` asks) → save (merge, write atomically) → record (``clm_domain.json``: source files with
their sha256, tokens seen, steps, the loss curve, the held-out loss before and after, the settings).

Frozen layers keep their original weights byte for byte: their LoRA never trained, and it is not merged (a LoRA
whose B is still zero would add exactly zero anyway, but not merging says so by construction). Task adapters
trained on the old base meet shifted activations on the new one; :mod:`clm_lib.evaluation.domain_comparison`
measures what that costs the original tasks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from peft import get_peft_model

from clm_lib.config import ClmConfig, DomainConfig
from clm_lib.errors import TrainingError
from clm_lib.modeling.architectures import check_context, lora_config
from clm_lib.modeling.examples import IGNORE_INDEX, Example, collate
from clm_lib.modeling.load import load_model, resolve_device
from clm_lib.modeling.prompt import special_ids
from clm_lib.training.context import TrainContext
from clm_lib.training.domain_text import DomainText, read_text_folder
from clm_lib.training.loop import make_optimizer, train_loop

log = logging.getLogger(__name__)

RECORD_FILE = "clm_domain.json"
"""Written into the adapted base: how it was made (lineage, like ``clm_base.json`` of a built demo base)."""
DOMAIN_TASK = "domain"
"""The ``task`` of every text chunk (the loop's examples carry one; nothing routes on it)."""


@dataclass(frozen=True)
class DomainResult:
    """What :func:`adapt_domain` did."""

    base_dir: Path
    """The base the text was learned on."""
    out_dir: Path
    """The domain-adapted base (``from_pretrained`` folder)."""
    steps: int
    tokens_seen: int
    train_chunks: int
    heldout_chunks: int
    heldout_loss_before: float | None
    """Mean cross-entropy per token of the held-out chunks under the original base (``None``: nothing held out)."""
    heldout_loss_after: float | None
    final_loss: float | None
    losses: list[float] = field(default_factory=list)
    merged_modules: int = 0
    frozen_modules: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0


def chunk_documents(tokenizer, documents: list[str], chunk_tokens: int) -> list[list[int]]:
    """Documents (each between BOS and EOS) concatenated and cut into chunks of ``chunk_tokens`` tokens; a last chunk
    shorter than two tokens has nothing to predict and is dropped."""
    bos, eos, _ = special_ids(tokenizer)
    stream: list[int] = []
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        stream.extend(([bos] if bos is not None else []) + ids + [eos])
    chunks = [stream[i : i + chunk_tokens] for i in range(0, len(stream), chunk_tokens)]
    return [c for c in chunks if len(c) >= 2]


def split_chunks(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) chunk indices: a seeded sample of ``fraction`` held out (at least one of two or more)."""
    order = np.random.default_rng([seed, 1]).permutation(n).tolist()
    k = 0 if fraction == 0 or n < 2 else max(1, round(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


def _examples(chunks: list[list[int]], indices: list[int], source: str) -> list[Example]:
    # Every token is a label: raw text has no prompt to mask.
    return [Example(tuple(chunks[i]), tuple(chunks[i]), DOMAIN_TASK, source, f"chunk-{i}") for i in indices]


@torch.inference_mode()
def text_loss(model, examples: list[Example], pad_id: int, device: torch.device, batch_size: int = 32) -> float | None:
    """Mean cross-entropy per predicted token over ``examples`` (``None`` when there are none)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        inputs = collate(examples[start : start + batch_size], pad_id, device)
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, :-1]
        target = inputs["labels"][:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
        total += float(nll)
        count += int((target != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(1, count)


def adapt_domain(
    cfg: ClmConfig,
    text_dir: str | Path,
    out_dir: str | Path,
    *,
    base_dir: str | Path | None = None,
    reason: str = "",
    settings: DomainConfig | None = None,
) -> DomainResult:
    """Learn the text under ``text_dir`` into a copy of the base (``base_dir``, default ``cfg.base_model_dir``) and
    write it to ``out_dir`` (refused if it holds anything). ``settings`` default to ``cfg.training.domain``."""
    start = time.monotonic()
    settings = settings or cfg.training.domain
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise TrainingError(f"--out {out_dir}: already exists and is not an empty folder; choose a new one")

    # --- setup ------------------------------------------------------------------------------------------------
    text = read_text_folder(text_dir, max_file_bytes=settings.max_file_bytes)
    if base_dir is None:
        from clm_lib.modeling.build import ensure_base_model

        base_dir = ensure_base_model(cfg)
    base_dir = Path(base_dir)
    torch.set_num_threads(cfg.training.threads)
    device = resolve_device(cfg.training.device)
    model, tokenizer = load_model(base_dir, None, device)
    chunk_tokens = settings.chunk_tokens or cfg.model.max_length
    check_context(chunk_tokens, model.config, str(base_dir))
    chunks = chunk_documents(tokenizer, text.documents, chunk_tokens)
    train_idx, held_idx = split_chunks(len(chunks), settings.heldout_fraction, settings.seed)
    if not train_idx:
        raise TrainingError(f"--text {text.folder}: too little text ({len(chunks)} chunk(s) of {chunk_tokens} tokens)")
    pad_id = special_ids(tokenizer)[2]
    train, held = _examples(chunks, train_idx, "new"), _examples(chunks, held_idx, "eval")
    loss_before = text_loss(model, held, pad_id, device)
    torch.manual_seed(settings.seed)  # the LoRA initialisation
    try:
        model = get_peft_model(model, lora_config(settings.lora, model))
    except ValueError as exc:
        raise TrainingError(
            f"cannot attach LoRA (training.domain.lora.target_modules={settings.lora.target_modules!r}): {exc}"
        ) from None
    model.to(device)
    training = cfg.training.model_copy(
        update={
            "max_steps": settings.max_steps,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "warmup_steps": settings.warmup_steps,
            "seed": settings.seed,
            "deepspeed": None,
        }
    )
    optimizer, scheduler = make_optimizer(model, training)
    ctx = TrainContext(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        training=training,
        device=device,
        pad_id=pad_id,
        data={"new": train, "replay": []},
        base_dir=base_dir,
    )
    strategies = []
    if settings.freeze.active:
        from clm_lib.training.strategies.freezing import Freezing

        strategies.append(Freezing(settings.freeze))

    # --- train ------------------------------------------------------------------------------------------------
    train_loop(ctx, strategies)
    loss_after = text_loss(model, held, pad_id, device)

    # --- save -------------------------------------------------------------------------------------------------
    merged, frozen = _merge_trained(model)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    merged_model = model.unload()  # the LoRA modules removed; merged layers keep their merged weights
    merged_model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    result = DomainResult(
        base_dir=base_dir,
        out_dir=out_dir,
        steps=ctx.step,
        tokens_seen=ctx.tokens_seen,
        train_chunks=len(train),
        heldout_chunks=len(held),
        heldout_loss_before=_round(loss_before),
        heldout_loss_after=_round(loss_after),
        final_loss=_round(ctx.final_loss),
        losses=[round(x, 5) for x in ctx.losses],
        merged_modules=merged,
        frozen_modules=frozen,
        wall_seconds=round(time.monotonic() - start, 2),
    )
    (tmp / RECORD_FILE).write_text(json.dumps(_record(result, text, settings, chunk_tokens, reason), indent=2))
    if out_dir.exists():
        out_dir.rmdir()  # checked empty above
    os.replace(tmp, out_dir)
    log.info(
        "domain-adapted base in %s: %d steps, held-out loss %s -> %s",
        out_dir,
        result.steps,
        result.heldout_loss_before,
        result.heldout_loss_after,
    )
    return result


def _merge_trained(model) -> tuple[int, list[str]]:
    """Merge the LoRA of every adapted layer that trained; leave frozen ones unmerged. (merged count, frozen names)"""
    from peft.tuners.lora import LoraLayer

    merged, frozen = 0, []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        params = [p for n, p in module.named_parameters() if "lora_" in n]
        if any(p.requires_grad for p in params):
            module.merge()
            merged += 1
        else:
            frozen.append(name.removeprefix("base_model.model."))
    return merged, frozen


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def _record(result: DomainResult, text: DomainText, settings: DomainConfig, chunk_tokens: int, reason: str) -> dict:
    return {
        "made_by": "clm_lib.training.domain.adapt_domain",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()},
        "text": {
            "folder": str(text.folder),
            "documents": len(text.documents),
            "sources": [asdict(s) for s in text.sources],
            "skipped": text.skipped,
        },
        "chunk_tokens": chunk_tokens,
        "settings": settings.model_dump(mode="json"),
        "versions": {"torch": torch.__version__},
    }


def read_record(base_dir: str | Path) -> dict[str, Any] | None:
    """The ``clm_domain.json`` of a domain-adapted base, or ``None`` for any other base."""
    path = Path(base_dir) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None
