"""The one training loop: AdamW, linear warmup + cosine decay, gradient clipping, strategy hooks, checkpoints.

Continual-learning behaviour lives in strategies (``clm_lib.training.strategies``), never here. A checkpoint
(adapter, optimizer, scheduler, step, RNG, sampler and strategy state) is written every
``training.checkpoint_every`` steps and after the last one; :func:`train_loop` resumes from the newest one, so
a retried Airflow task continues where the killed one stopped, and one that already finished trains no more.
Everything a step draws is restored with it, so a resumed run ends with the same weights as one never stopped.

Two things change how a step runs, not what it computes: per-task adapters (``ctx.adapters``) send each task's
share of the batch through its own adapter, one forward pass per task, one backward pass over their sum; and
DeepSpeed (``ctx.deepspeed``, see ``clm_lib.training.deepspeed_engine``) does backward, clipping and the optimizer
step through its engine, each rank training its share of the batch.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import get_cosine_schedule_with_warmup

from clm_lib.config import TrainingConfig
from clm_lib.errors import TrainingError
from clm_lib.faults import fault_point
from clm_lib.training.context import TrainContext
from clm_lib.training.data import Batch, EpochSampler, collate
from clm_lib.training.strategies.base import Strategy

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.pt"
DEEPSPEED_STATE_DIR = "deepspeed"
"""Sub-folder of a checkpoint with the DeepSpeed engine's own state (its optimizer partitions)."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def make_optimizer(
    model: torch.nn.Module, training: TrainingConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the trainable parameters, warmup then cosine decay over ``max_steps``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters (is the adapter attached?)")
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=training.weight_decay)
    warmup = min(training.warmup_steps, training.max_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, training.max_steps)
    return optimizer, scheduler


def train_loop(
    ctx: TrainContext,
    strategies: list[Strategy],
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainContext:
    """Train until ``ctx.step == max_steps``, resuming from the newest checkpoint in ``checkpoint_dir``.

    ``on_checkpoint``: called on rank 0 with each checkpoint once complete (a pod copies it off its disk)."""
    if not ctx.data.get("new"):
        raise TrainingError("no new examples to train on")
    ctx.sampler = EpochSampler(len(ctx.data["new"]), ctx.training.seed)
    ctx.model.train()
    for s in strategies:
        s.before_training(ctx)
    if ctx.deepspeed is not None and ctx.engine is None:
        # After before_training: a strategy may still change what the optimizer holds (freezing does).
        from clm_lib.training.deepspeed_engine import wrap

        wrap(ctx, ctx.deepspeed)
    if checkpoint_dir is not None:
        latest = latest_checkpoint(checkpoint_dir)
        if latest is not None:
            load_checkpoint(ctx, strategies, latest, fingerprint)
            ctx.resumed_from = ctx.step
            log.info("resumed from %s at step %d of %d", latest, ctx.step, ctx.max_steps)
    while ctx.step < ctx.max_steps:
        loss = _step(ctx, strategies)
        ctx.losses.append(loss)
        ctx.step += 1
        for s in strategies:
            s.after_step(ctx)
        if ctx.step % 25 == 0 or ctx.step == ctx.max_steps:
            log.info("step %d/%d loss %.4f lr %.2e", ctx.step, ctx.max_steps, loss, ctx.scheduler.get_last_lr()[0])
        if checkpoint_dir is not None and (ctx.step % ctx.training.checkpoint_every == 0 or ctx.step == ctx.max_steps):
            saved = save_checkpoint(ctx, strategies, checkpoint_dir, fingerprint)
            if on_checkpoint is not None and ctx.rank == 0:
                on_checkpoint(saved)
    for s in strategies:
        s.after_training(ctx)
    ctx.model.eval()
    return ctx


def _step(ctx: TrainContext, strategies: list[Strategy]) -> float:
    assert ctx.sampler is not None
    new = ctx.data["new"]
    batch = Batch(examples=[new[i] for i in ctx.sampler.take(ctx.training.batch_size)])
    for s in strategies:
        batch = s.before_batch(ctx, batch) or batch
    # Every rank draws the same batch (same seed, same state) and trains its own share; DeepSpeed averages them.
    mine = Batch(examples=batch.examples[ctx.rank :: ctx.world_size])
    parts = ctx.adapters.parts(mine) if ctx.adapters is not None else [(None, mine)]
    forward = ctx.engine if ctx.engine is not None else ctx.model
    loss = None
    for task, part in parts:
        ctx.active_task = task
        if task is not None:
            ctx.adapters.activate(ctx.model, task)
        part.inputs = collate(part.examples, ctx.pad_id, ctx.device)
        outputs = forward(**part.inputs)
        part_loss = outputs.loss
        for s in strategies:
            extra = s.extra_loss(ctx, part, outputs)
            if extra is not None:
                part_loss = part_loss + extra
        part_loss = part_loss * (len(part.examples) / len(mine.examples)) if len(parts) > 1 else part_loss
        loss = part_loss if loss is None else loss + part_loss
    ctx.active_task = None
    fault_point("train.mid_step")  # forward done, weights not yet stepped
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingError(f"training diverged at step {ctx.step + 1}: loss is {value}; lower the learning rate")
    if ctx.engine is not None:
        ctx.engine.backward(loss)
        ctx.engine.step()  # clips to gradient_clipping, steps optimizer and scheduler, zeroes gradients
    else:
        loss.backward()
        params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, ctx.training.max_grad_norm)
        ctx.optimizer.step()
        ctx.scheduler.step()
        ctx.optimizer.zero_grad(set_to_none=True)
    for source in ctx.seen:
        ctx.seen[source] += batch.count(source)
    ctx.tokens_seen += sum(len(ex.input_ids) for ex in batch.examples)
    return value


# --- checkpoints ----------------------------------------------------------------------------------------------


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint (incomplete ones never carry the final name)."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).exists()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _weights_file(checkpoint: Path, adapter: str) -> Path:
    # PEFT's save_pretrained layout: the adapter called "default" at the top, any other in a folder of its name.
    return (checkpoint if adapter == "default" else checkpoint / adapter) / ADAPTER_WEIGHTS


def save_checkpoint(ctx: TrainContext, strategies: list[Strategy], checkpoint_dir: Path, fingerprint: str) -> Path:
    """Write ``step-NNNNNN`` atomically (to a temporary name, then renamed) and drop older checkpoints.

    Under DeepSpeed every rank writes its share of the engine's state; rank 0 writes the rest and renames.
    """
    from clm_lib.training.deepspeed_engine import barrier

    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{ctx.step:06d}"
    tmp = checkpoint_dir / f".{final.name}.tmp"
    if ctx.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(ctx)
    if ctx.engine is not None:
        ctx.engine.save_checkpoint(
            str(tmp / DEEPSPEED_STATE_DIR), tag="state", save_latest=False, exclude_frozen_parameters=True
        )
    if ctx.rank == 0:
        ctx.model.save_pretrained(str(tmp))
        fault_point("train.mid_checkpoint")  # weights written, trainer state not, not yet renamed
        state = {
            "step": ctx.step,
            "fingerprint": fingerprint,
            # The engine keeps optimizer and scheduler state in its own files (partitioned under ZeRO).
            "optimizer": ctx.optimizer.state_dict() if ctx.engine is None else {},
            "scheduler": ctx.scheduler.state_dict() if ctx.engine is None else {},
            "sampler": ctx.sampler.state_dict() if ctx.sampler else {},
            "strategies": {s.name: s.state_dict() for s in strategies},
            "seen": dict(ctx.seen),
            "tokens_seen": ctx.tokens_seen,
            "losses": list(ctx.losses),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    barrier(ctx)
    return final


def load_checkpoint(ctx: TrainContext, strategies: list[Strategy], path: Path, fingerprint: str) -> None:
    """Restore everything :func:`save_checkpoint` wrote; refuse a checkpoint of a different run."""
    state: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    if fingerprint and state.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"checkpoint {path} belongs to a run with other data or settings; "
            f"delete {path.parent} or train into a new output folder"
        )
    for adapter in getattr(ctx.model, "peft_config", {"default": None}):
        weights = load_file(str(_weights_file(path, adapter)), device=str(ctx.device))
        set_peft_model_state_dict(ctx.model, weights, adapter_name=adapter)
    if ctx.engine is not None:
        if not (path / DEEPSPEED_STATE_DIR).is_dir():
            raise TrainingError(f"checkpoint {path} was not written under DeepSpeed; train into a new output folder")
        ctx.engine.load_checkpoint(str(path / DEEPSPEED_STATE_DIR), tag="state", load_module_strict=False)
    else:
        ctx.optimizer.load_state_dict(state["optimizer"])
        ctx.scheduler.load_state_dict(state["scheduler"])
    if ctx.sampler is not None and state["sampler"]:
        ctx.sampler.load_state_dict(state["sampler"])
    for s in strategies:
        s.load_state_dict(state["strategies"].get(s.name, {}))
    ctx.step = int(state["step"])
    ctx.seen = dict(state["seen"])
    ctx.tokens_seen = int(state["tokens_seen"])
    ctx.losses = list(state["losses"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
