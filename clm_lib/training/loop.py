"""The one training loop: AdamW, linear warmup + cosine decay, gradient clipping, strategy hooks, checkpoints.

Continual-learning behaviour lives in strategies (``clm_lib.training.strategies``), never here. A checkpoint
(adapter, optimizer, scheduler, step, RNG, sampler and strategy state) is written every
``training.checkpoint_every`` steps and after the last one; :func:`train_loop` resumes from the newest one, so
a retried Airflow task continues where the killed one stopped, and one that already finished trains no more.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import get_cosine_schedule_with_warmup

from clm_lib.config import TrainingConfig
from clm_lib.errors import TrainingError
from clm_lib.training.data import Batch, EpochSampler, Example, collate
from clm_lib.training.strategies import Strategy

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STRATEGY_STATE_DIR = "clm_strategies"
"""Sub-folder of a saved adapter where strategies keep what the next update needs (EWC's Fisher, a router...)."""
LOSS_WINDOW = 10
"""``final_loss`` is the mean over this many last steps: one step's loss is too noisy to compare runs."""


@dataclass
class TrainContext:
    """Everything a strategy hook may read or change."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    training: TrainingConfig
    device: torch.device
    pad_id: int
    data: dict[str, list[Example]]
    """``new``: this update's examples; ``replay``: the buffer (read by the replay strategy)."""
    step: int = 0
    """Optimizer steps done so far."""
    seen: dict[str, int] = field(default_factory=lambda: {"new": 0, "replay": 0})
    """Examples trained on, by source."""
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)
    sampler: EpochSampler | None = None
    base_dir: Path | None = None
    """The frozen base model (a strategy may load a second copy, e.g. a distillation teacher)."""
    parent_adapter_dir: Path | None = None
    """The adapter this update continues (the champion's), or ``None`` for a fresh one. Strategies read the state
    they persisted with it from ``parent_adapter_dir / STRATEGY_STATE_DIR / <name>``."""

    @property
    def max_steps(self) -> int:
        return self.training.max_steps

    @property
    def final_loss(self) -> float | None:
        window = self.losses[-LOSS_WINDOW:]
        return sum(window) / len(window) if window else None


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
    ctx: TrainContext, strategies: list[Strategy], checkpoint_dir: Path | None = None, fingerprint: str = ""
) -> TrainContext:
    """Train until ``ctx.step == max_steps``, resuming from the newest checkpoint in ``checkpoint_dir``."""
    if not ctx.data.get("new"):
        raise TrainingError("no new examples to train on")
    ctx.sampler = EpochSampler(len(ctx.data["new"]), ctx.training.seed)
    ctx.model.train()
    for s in strategies:
        s.before_training(ctx)
    if checkpoint_dir is not None:
        latest = latest_checkpoint(checkpoint_dir)
        if latest is not None:
            load_checkpoint(ctx, strategies, latest, fingerprint)
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
            save_checkpoint(ctx, strategies, checkpoint_dir, fingerprint)
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
    batch.inputs = collate(batch.examples, ctx.pad_id, ctx.device)
    outputs = ctx.model(**batch.inputs)
    loss = outputs.loss
    for s in strategies:
        extra = s.extra_loss(ctx, batch, outputs)
        if extra is not None:
            loss = loss + extra
    if not math.isfinite(loss.item()):
        raise TrainingError(f"training diverged at step {ctx.step + 1}: loss is {loss.item()}; lower the learning rate")
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in ctx.model.parameters() if p.requires_grad], ctx.training.max_grad_norm)
    ctx.optimizer.step()
    ctx.scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    for source in ctx.seen:
        ctx.seen[source] += batch.count(source)
    ctx.tokens_seen += int(batch.inputs["attention_mask"].sum())
    return loss.item()


# --- checkpoints ----------------------------------------------------------------------------------------------


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint (incomplete ones never carry the final name)."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).exists()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def save_checkpoint(ctx: TrainContext, strategies: list[Strategy], checkpoint_dir: Path, fingerprint: str) -> Path:
    """Write ``step-NNNNNN`` atomically (to a temporary name, then renamed) and drop older checkpoints."""
    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{ctx.step:06d}"
    tmp = checkpoint_dir / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ctx.model.save_pretrained(str(tmp))
    state = {
        "step": ctx.step,
        "fingerprint": fingerprint,
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
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
    return final


def load_checkpoint(ctx: TrainContext, strategies: list[Strategy], path: Path, fingerprint: str) -> None:
    """Restore everything :func:`save_checkpoint` wrote; refuse a checkpoint of a different run."""
    state: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    if fingerprint and state.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"checkpoint {path} belongs to a run with other data or settings; "
            f"delete {path.parent} or train into a new output folder"
        )
    set_peft_model_state_dict(ctx.model, load_file(str(path / ADAPTER_WEIGHTS), device=str(ctx.device)))
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
