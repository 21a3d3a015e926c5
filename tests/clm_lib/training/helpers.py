"""Building blocks for loop and strategy tests: record tables and a LoRA model on the tiny base."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import torch
from peft import LoraConfig, get_peft_model

from clm_lib.demo.stream import generate_task
from clm_lib.modeling.load import load_model
from clm_lib.training.context import TrainContext
from clm_lib.training.data import encode_table
from clm_lib.training.loop import make_optimizer
from clm_lib.training.strategies import Strategy


def records(task: str, n: int, seed: int = 0) -> pa.Table:
    rows = generate_task(task, n, seed)
    ids = [hashlib.sha256(f"{r['task']}{r['prompt']}".encode()).hexdigest()[:16] for r in rows]
    return pa.Table.from_pylist([{"id": i, **r} for i, r in zip(ids, rows, strict=True)])


def make_context(cfg, base, new: pa.Table, replay: pa.Table | None = None) -> TrainContext:
    model, tok = load_model(base)
    torch.manual_seed(0)  # the same LoRA initialisation in every context
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer, scheduler = make_optimizer(model, cfg.training)
    data = {"new": encode_table(tok, new, cfg.model.max_length, "new")}
    data["replay"] = encode_table(tok, replay, cfg.model.max_length, "replay") if replay is not None else []
    return TrainContext(model, optimizer, scheduler, cfg.training, torch.device("cpu"), tok.pad_token_id, data)


def lora_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class Spy(Strategy):
    """Records the step of every batch; raises at step ``crash_at``, as a killed run would stop."""

    name = "spy"

    def __init__(self, crash_at: int | None = None):
        self.steps: list[int] = []
        self.crash_at = crash_at

    def before_batch(self, ctx, batch):
        self.steps.append(ctx.step)

    def after_step(self, ctx):
        if ctx.step == self.crash_at:
            raise RuntimeError("killed")
