"""One continual update of the model, top to bottom: setup → train → save → cleanup.

``train_update`` trains a LoRA adapter on this update's new records plus, through the strategies switched on in
the config (replay, ...), what they bring. It continues the parent adapter when there is one (the model keeps
learning along its lineage) and starts a fresh adapter otherwise. Everything it writes goes under
``output_dir``::

    adapter/             the adapter (save_pretrained) + tokenizer + prompt format (``clm_prompt.json``):
                         load with clm_lib.modeling.load_model
                         (with ``training.adapters.mode: per_task``: one adapter per task and the router)
    train_summary.json   what was trained on, how, and how it went
    checkpoints/         the newest resumable checkpoint (a retried task resumes from it)
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import peft
import pyarrow as pa
import pyarrow.compute as pc
import torch
import transformers
from peft import get_peft_model

from clm_lib.config import ClmConfig
from clm_lib.errors import TrainingError
from clm_lib.modeling.architectures import check_context, lora_config, lora_targets
from clm_lib.modeling.build import ensure_base_model
from clm_lib.modeling.load import load_model, resolve_device
from clm_lib.modeling.prompt import (
    PROMPT_ATTR,
    check_continuation,
    load_prompt_config,
    prompt_format,
    save_prompt_config,
)
from clm_lib.modeling.task_adapters import MANIFEST
from clm_lib.training.adapters import TaskAdapters, fit_router, save_task_adapters, setup_task_adapters
from clm_lib.training.context import STRATEGY_STATE_DIR, TrainContext, TrainResult
from clm_lib.training.data import check_table, encode_table, special_ids
from clm_lib.training.loop import make_optimizer, train_loop
from clm_lib.training.strategies import Strategy, build_strategies

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"


def train_update(
    cfg: ClmConfig,
    *,
    new_data: pa.Table,
    replay_data: pa.Table | None,
    parent_adapter_dir: Path | None,
    output_dir: Path,
    run_id: str,
    strategies: list[Strategy] | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train one update; tables need columns ``id, task, prompt, response`` (training-split rows only).

    ``strategies``: the ones ``run_update`` built and prepared (``before_update``), which own state beyond the
    config; ``None`` builds them from ``cfg``. ``on_checkpoint``: see :func:`~clm_lib.training.loop.train_loop`.
    """
    start = time.monotonic()
    output_dir = Path(output_dir)

    # --- setup ------------------------------------------------------------------------------------------------
    new_data = check_table(new_data, "new_data")
    replay_data = check_table(replay_data, "replay_data")
    if new_data.num_rows == 0:
        raise TrainingError(f"run {run_id}: no new training rows, nothing to learn from")
    torch.set_num_threads(cfg.training.threads)
    torch.manual_seed(cfg.training.seed)
    device = resolve_device(cfg.training.device)
    base_dir = ensure_base_model(cfg)
    if parent_adapter_dir is not None:  # refused before anything is loaded: the config must change, not the run
        check_continuation(load_prompt_config(parent_adapter_dir), cfg.model.prompt, parent_adapter_dir)
    model, tokenizer, adapters = _setup_model(cfg, base_dir, parent_adapter_dir, device, new_data)
    check_context(cfg.model.max_length, model.config, str(base_dir))
    # This update learns the configured prompt format (the parent's, checked above); the adapter is saved with it.
    setattr(model, PROMPT_ATTR, cfg.model.prompt)
    fmt = prompt_format(model, tokenizer)
    strategies = build_strategies(cfg) if strategies is None else strategies
    buffer = replay_data  # the router learns from all of it, whatever is trained on
    if replay_data.num_rows and not any(s.name == "replay" for s in strategies):
        log.warning("replay is switched off: the %d replay rows given are not trained on", replay_data.num_rows)
        replay_data = replay_data.slice(0, 0)
    if adapters is not None and replay_data.num_rows:
        # Replayed examples of a task go through its adapter; those of tasks this update leaves frozen train nothing.
        replay_data = replay_data.filter(pc.is_in(replay_data.column("task"), pa.array(adapters.trainable)))
    data = {
        "new": encode_table(tokenizer, new_data, cfg.model.max_length, "new", fmt=fmt),
        "replay": encode_table(tokenizer, replay_data, cfg.model.max_length, "replay", fmt=fmt),
    }
    optimizer, scheduler = make_optimizer(model, cfg.training)
    ds_config = None
    if cfg.training.deepspeed is not None:
        from clm_lib.training.deepspeed_engine import load_config, world

        ds_config = load_config(cfg.training.deepspeed, cfg.training, world()[1])
    ctx = TrainContext(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        training=cfg.training,
        device=device,
        pad_id=special_ids(tokenizer)[2],
        data=data,
        base_dir=base_dir,
        parent_adapter_dir=parent_adapter_dir,
        adapters=adapters,
        deepspeed=ds_config,
    )
    fingerprint = _fingerprint(cfg, new_data, replay_data, base_dir, parent_adapter_dir)

    # --- train ------------------------------------------------------------------------------------------------
    train_loop(ctx, strategies, output_dir / "checkpoints", fingerprint, on_checkpoint)

    # --- save -------------------------------------------------------------------------------------------------
    summaries = {s.name: s.params() for s in strategies}
    router = None
    if adapters is not None:
        router = fit_router(
            cfg.training.adapters.router, adapters.parent_router, [buffer, new_data], list(adapters.names)
        )
        summaries["adapters"] = {**adapters.summary(), **router.summary()}
    adapter_dir = output_dir / "adapter"
    if ctx.rank == 0:
        _save_adapter(model, tokenizer, adapter_dir, ctx, strategies, adapters, router)
    seen = sum(ctx.seen.values())
    result = TrainResult(
        adapter_dir=adapter_dir,
        steps=ctx.step,
        final_loss=ctx.final_loss,
        new_rows=new_data.num_rows,
        replay_rows=replay_data.num_rows,
        replay_fraction=ctx.seen.get("replay", 0) / seen if seen else 0.0,
        tasks=_task_order(replay_data, new_data),
        wall_seconds=round(time.monotonic() - start, 2),
        tokens_seen=ctx.tokens_seen,
        strategies=summaries,
    )
    if ctx.rank == 0:
        _write_summary(output_dir / SUMMARY_FILE, result, ctx, strategies, cfg, run_id, base_dir, parent_adapter_dir)
    if ctx.deepspeed is not None:
        from clm_lib.training.deepspeed_engine import barrier

        barrier(ctx)  # no rank returns before rank 0 has written the adapter
    log.info(
        "run %s trained %d steps in %.1f s, final loss %s", run_id, result.steps, result.wall_seconds, result.final_loss
    )

    # --- cleanup ----------------------------------------------------------------------------------------------
    del ctx, model, optimizer, scheduler
    gc.collect()
    return result


def _setup_model(
    cfg: ClmConfig, base_dir: Path, parent_adapter_dir: Path | None, device: torch.device, new_data: pa.Table
) -> tuple[Any, Any, TaskAdapters | None]:
    """(model, tokenizer, per-task adapters or ``None``), with the parent's adapter(s) or fresh ones."""
    if cfg.training.adapters.mode == "per_task":
        base, tokenizer = load_model(base_dir, None, device)
        tasks = _task_order(new_data)
        model, adapters = setup_task_adapters(base, parent_adapter_dir, tasks, cfg.training.lora)
        model.to(device).train()
        log.info(
            "per-task adapters: training %s, keeping %s frozen", tasks, [t for t in adapters.names if t not in tasks]
        )
        return model, tokenizer, adapters
    if parent_adapter_dir is not None and (Path(parent_adapter_dir) / MANIFEST).exists():
        raise TrainingError(
            f"the parent adapter {parent_adapter_dir} holds per-task adapters, but training.adapters.mode is shared"
        )
    if parent_adapter_dir is not None:
        return (*load_model(base_dir, parent_adapter_dir, device, is_trainable=True), None)
    model, tokenizer = load_model(base_dir, None, device)
    lora = cfg.training.lora
    try:
        model = get_peft_model(model, lora_config(lora, model))
    except ValueError as exc:
        raise TrainingError(
            f"cannot attach LoRA (training.lora.target_modules={lora.target_modules!r}): {exc}"
        ) from None
    return model.to(device), tokenizer, None


def _fingerprint(cfg: ClmConfig, new: pa.Table, replay: pa.Table, base_dir: Path, parent: Path | None) -> str:
    """Identifies what a checkpoint was trained on, so a resume never mixes two different runs."""
    h = hashlib.sha256()
    for part in (
        sorted(new.column("id").to_pylist()),
        sorted(replay.column("id").to_pylist()),
        cfg.training.model_dump(mode="json"),
        cfg.model.model_dump(mode="json"),
        str(base_dir),
        str(parent) if parent else None,
    ):
        h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _save_adapter(
    model,
    tokenizer,
    adapter_dir: Path,
    ctx: TrainContext,
    strategies: list[Strategy],
    adapters: TaskAdapters | None = None,
    router=None,
) -> Path:
    tmp = adapter_dir.with_name(adapter_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if adapters is not None:
        tmp.mkdir(parents=True)
        save_task_adapters(model, adapters, router, tmp)
    else:
        model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    save_prompt_config(prompt_format(model, tokenizer).config, tmp)
    for s in strategies:
        state_dir = tmp / STRATEGY_STATE_DIR / s.name
        state_dir.mkdir(parents=True, exist_ok=True)
        s.after_save(ctx, state_dir)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)
    return adapter_dir


def _task_order(*tables: pa.Table) -> list[str]:
    order: dict[str, None] = {}
    for table in tables:
        order.update(dict.fromkeys(table.column("task").to_pylist()))
    return list(order)


def _write_summary(
    path: Path,
    result: TrainResult,
    ctx: TrainContext,
    strategies: list[Strategy],
    cfg: ClmConfig,
    run_id: str,
    base_dir: Path,
    parent: Path | None,
) -> None:
    summary = {
        "run_id": run_id,
        **asdict(result),
        "adapter_dir": str(result.adapter_dir),
        "base_model_dir": str(base_dir),
        "parent_adapter_dir": str(parent) if parent else None,
        "config_hash": cfg.config_hash(),
        "training": cfg.training.model_dump(mode="json"),
        "lora": _lora_record(ctx.model),
        "resumed_from_step": ctx.resumed_from,
        "deepspeed": ctx.deepspeed,
        "world_size": ctx.world_size,
        "examples_seen": dict(ctx.seen),
        "losses": [round(x, 5) for x in ctx.losses],
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "strategy_order": [s.name for s in strategies],
    }
    path.write_text(json.dumps(summary, indent=2, default=str))


def _lora_record(model) -> dict[str, Any] | None:
    if not hasattr(model, "peft_config"):
        return None
    record = next(iter(model.peft_config.values())).to_dict()
    # PEFT resolves ``all-linear`` to a set of module names, which JSON would only write as its repr.
    record["target_modules"] = lora_targets(model)
    return record
