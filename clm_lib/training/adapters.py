"""Per-task adapters in training: one LoRA adapter per task over the shared frozen base (``adapters.mode: per_task``).

An update trains only the adapters of the tasks in its new data: a task seen before continues its own adapter, a
new task gets a new one, and every other adapter is loaded frozen and left out of the optimizer, so it cannot
change. Within a step, each task's examples (new and replayed alike) go through that task's adapter
(:meth:`TaskAdapters.parts` and :meth:`TaskAdapters.activate`, used by the loop). After training the router is
refitted on its memory plus this update's prompts (:func:`fit_router`) and saved with the adapters
(:func:`save_task_adapters`, layout in ``clm_lib.modeling.task_adapters``). :func:`remove_task_adapter` takes a
task out again and reports what that did to the others. The optional O-LoRA penalty between adapters is a strategy
(``clm_lib.training.strategies.orthogonality``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import torch

from clm_lib.errors import TrainingError
from clm_lib.modeling.architectures import lora_config
from clm_lib.modeling.router import TaskRouter
from clm_lib.modeling.task_adapters import (
    ADAPTERS_DIR,
    ROUTER_DIR,
    adapter_name,
    adapter_path,
    load_router,
    load_task_adapters,
    read_manifest,
    write_manifest,
)
from clm_lib.training.data import Batch

if TYPE_CHECKING:
    from clm_lib.config import LoraConfig
    from clm_lib.training.adapter_config import RouterConfig

log = logging.getLogger(__name__)


@dataclass
class TaskAdapters:
    """Which adapters a model holds, which of them this update trains, and the parent's router."""

    names: dict[str, str]
    """Every task with an adapter -> its adapter name."""
    trainable: list[str]
    """Tasks whose adapters this update trains (the tasks of its new data), in order of first appearance."""
    parent_router: TaskRouter | None = None
    _lora_params: list[torch.nn.Parameter] = field(default_factory=list, repr=False)

    def parts(self, batch: Batch) -> list[tuple[str, Batch]]:
        """The batch split by task, in order of first appearance; every task must be one this update trains."""
        by_task: dict[str, list] = {}
        for ex in batch.examples:
            by_task.setdefault(ex.task, []).append(ex)
        frozen = [t for t in by_task if t not in self.trainable]
        if frozen:
            raise TrainingError(f"the batch holds examples of {frozen}, whose adapters this update does not train")
        return [(task, Batch(examples=examples)) for task, examples in by_task.items()]

    def activate(self, model, task: str) -> None:
        """Make ``task``'s adapter the one the next forward pass goes through.

        PEFT's ``set_adapter`` also flips ``requires_grad`` (only the active adapter trainable). Those flags are put
        back: the loop sums every task's loss before one backward pass, and autograd skips a parameter whose flag was
        turned off after its forward pass (the same flags decide what DeepSpeed reduces).
        """
        if not self._lora_params:
            self._lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
        flags = [p.requires_grad for p in self._lora_params]
        model.base_model.set_adapter(self.names[task])
        for p, flag in zip(self._lora_params, flags, strict=True):
            p.requires_grad_(flag)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": "per_task",
            "adapters": dict(self.names),
            "trained": list(self.trainable),
            "frozen": [t for t in self.names if t not in self.trainable],
        }


def setup_task_adapters(base_model, parent_adapter_dir: Path | None, tasks: Sequence[str], lora: LoraConfig):
    """(model, TaskAdapters): the parent's adapters, plus a new one for each task in ``tasks`` that has none yet.

    Only the adapters of ``tasks`` keep ``requires_grad`` (the optimizer is built from that); the rest are frozen.
    """
    from peft import get_peft_model

    tasks = list(dict.fromkeys(tasks))
    names: dict[str, str] = {}
    parent_router = None
    model = None
    if parent_adapter_dir is not None:
        manifest = read_manifest(parent_adapter_dir)
        if manifest is None:
            raise TrainingError(
                f"the parent adapter {parent_adapter_dir} is a shared adapter, but training.adapters.mode is "
                "per_task: start per-task adapters from no parent (or keep mode: shared)"
            )
        model = load_task_adapters(base_model, parent_adapter_dir, is_trainable=True)
        names = dict(manifest["adapters"])
        parent_router = load_router(Path(parent_adapter_dir))
    taken = set(names.values())
    for task in tasks:
        if task in names:
            continue
        name = adapter_name(task)
        if name in taken:
            raise TrainingError(f"task {task!r} maps to adapter name {name!r}, already used by another task")
        try:
            if model is None:
                model = get_peft_model(base_model, lora_config(lora, base_model), adapter_name=name)
            else:
                model.add_adapter(name, lora_config(lora, model))
        except ValueError as exc:
            raise TrainingError(
                f"cannot attach LoRA (training.lora.target_modules={lora.target_modules!r}): {exc}"
            ) from None
        names[task] = name
        taken.add(name)
    trainable_names = {names[t] for t in tasks}
    for param_name, param in model.named_parameters():
        if "lora_" in param_name:
            param.requires_grad_(any(f".{n}." in param_name for n in trainable_names))
        else:
            param.requires_grad_(False)
    return model, TaskAdapters(names, tasks, parent_router)


def fit_router(
    settings: RouterConfig,
    parent: TaskRouter | None,
    tables: Sequence[pa.Table],
    tasks: Sequence[str],
    drop: Sequence[str] = (),
) -> TaskRouter:
    """The router after an update: the parent's memory plus the prompts of ``tables``, for the tasks in ``tasks``."""
    prompts: dict[str, list[str]] = {}
    for table in tables:
        for task, prompt in zip(table.column("task").to_pylist(), table.column("prompt").to_pylist(), strict=True):
            if task in tasks:
                prompts.setdefault(task, []).append(prompt)
    router = TaskRouter.fit(
        prompts,
        previous=parent,
        drop=[*drop, *(t for t in (parent.tasks if parent else []) if t not in tasks)],
        examples_per_task=settings.examples_per_task,
        holdout_fraction=settings.holdout_fraction,
        n_features=settings.n_features,
        inverse_regularization=settings.inverse_regularization,
    )
    missing = [t for t in tasks if t not in router.tasks]
    if missing:
        raise TrainingError(f"the router has no prompts of {missing}; their adapters could never be chosen")
    return router


def save_task_adapters(model, adapters: TaskAdapters, router: TaskRouter, out_dir: Path) -> None:
    """Write every adapter, the router and the manifest into ``out_dir`` (layout: ``modeling.task_adapters``)."""
    model.save_pretrained(str(out_dir / ADAPTERS_DIR), selected_adapters=list(adapters.names.values()))
    router.save(out_dir / ROUTER_DIR)
    write_manifest(out_dir, adapters.names)


# --- removing a task -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalReport:
    """What removing a task's adapter did to the tasks that stay."""

    task: str
    adapter: str
    remaining: list[str]
    before: dict[str, float]
    """Accuracy (0-100) of each remaining task before the removal (empty without evaluation data)."""
    after: dict[str, float]
    router_accuracy: float | None

    @property
    def change(self) -> dict[str, float]:
        return {t: round(self.after[t] - self.before[t], 2) for t in self.after if t in self.before}


def remove_task_adapter(
    adapter_dir: str | Path,
    task: str,
    *,
    base_dir: str | Path,
    eval_data: pa.Table | None = None,
    max_examples_per_task: int = 200,
    batch_size: int = 64,
    max_length: int | None = None,
) -> RemovalReport:
    """Take ``task``'s adapter out of the per-task folder ``adapter_dir`` and refit the router without it.

    The new folder is written beside the old one and swapped in by renames, so no reader sees a half-removed one.
    With ``eval_data`` (held-out records), the remaining tasks are scored before and after, routed by the router
    as in serving: a prompt that went to the removed adapter now goes to another one, and one of another task that
    was misrouted to it may now be answered right.
    """
    from clm_lib.evaluation.metrics import score_tasks
    from clm_lib.modeling.load import load_model

    adapter_dir = Path(adapter_dir)
    manifest = read_manifest(adapter_dir)
    if manifest is None:
        raise TrainingError(f"{adapter_dir} holds one shared adapter, not per-task adapters: no task can be removed")
    names: dict[str, str] = dict(manifest["adapters"])
    if task not in names:
        raise TrainingError(f"{adapter_dir} has no adapter for task {task!r} (it has {', '.join(names)})")
    if len(names) == 1:
        raise TrainingError(f"{task!r} has the only adapter in {adapter_dir}; removing it would leave no model")
    remaining = [t for t in names if t != task]

    def score() -> dict[str, float]:
        if eval_data is None:
            return {}
        data = eval_data.filter(pc.is_in(eval_data.column("task"), pa.array(remaining)))
        model, tokenizer = load_model(base_dir, adapter_dir)
        scores = score_tasks(
            model,
            tokenizer,
            data,
            max_examples_per_task=max_examples_per_task,
            batch_size=batch_size,
            max_length=max_length,
        )
        return {t: round(s.accuracy, 2) for t, s in scores.items()}

    before = score()
    router = load_router(adapter_dir)
    tmp = adapter_dir.with_name(adapter_dir.name + ".removing")
    old = adapter_dir.with_name(adapter_dir.name + ".removed")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(adapter_dir, tmp)
    shutil.rmtree(adapter_path(tmp, names.pop(task)))
    shutil.rmtree(tmp / ROUTER_DIR, ignore_errors=True)
    if router is not None:
        router = TaskRouter.fit({}, previous=router, drop=[task], **router.settings)
        router.save(tmp / ROUTER_DIR)
    write_manifest(tmp, names)
    os.replace(adapter_dir, old)
    os.replace(tmp, adapter_dir)
    shutil.rmtree(old, ignore_errors=True)
    log.info("removed the adapter of %s from %s", task, adapter_dir)
    return RemovalReport(
        task=task,
        adapter=manifest["adapters"][task],
        remaining=remaining,
        before=before,
        after=score(),
        router_accuracy=router.accuracy if router is not None else None,
    )
