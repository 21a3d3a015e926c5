"""Per-task adapters on disk and at inference: one LoRA adapter per task over one frozen base, and their routing.

A per-task adapter folder (what training writes, what MLflow logs with the model)::

    clm_adapters.json    {"format": 1, "mode": "per_task", "adapters": {task: adapter name}}
    adapters/<name>/     one PEFT adapter per task (adapter_config.json, adapter_model.safetensors)
    router/              the learned router (clm_lib.modeling.router)
    tokenizer files, clm_strategies/   as in a shared adapter folder

:func:`load_task_adapters` puts every adapter on the base model and attaches a :class:`Routing` to it as
``model.clm_routing``. Scoring (``clm_lib.evaluation.metrics``) and generation (``clm_lib.modeling.generate``) read
it and send each prompt through its adapter in one mixed batch (PEFT's ``adapter_names``): the task's adapter when
the caller names a known task, else the router's choice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clm_lib.errors import TrainingError
from clm_lib.modeling.router import TaskRouter

MANIFEST = "clm_adapters.json"
ADAPTERS_DIR = "adapters"
ROUTER_DIR = "router"
FORMAT = 1
ROUTING_ATTR = "clm_routing"


def adapter_name(task: str) -> str:
    """The PEFT adapter name of a task: a valid module key whatever the task is called, and stable.

    The prefix keeps names clear of attributes of ``torch.nn.ModuleDict`` (a task called ``keys`` or ``training``
    would otherwise break PEFT); a task name that needs escaping gets a short hash so two tasks never collide.
    """
    safe = re.sub(r"[^0-9A-Za-z_]", "_", task)
    if safe != task or not safe:
        safe += "_" + hashlib.sha256(task.encode()).hexdigest()[:6]
    return f"task_{safe}"


def read_manifest(adapter_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a per-task adapter folder, or ``None`` for a shared (single) adapter."""
    path = Path(adapter_dir) / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("mode") != "per_task":
        raise TrainingError(f"{path}: unknown adapter manifest (format {manifest.get('format')})")
    return manifest


def write_manifest(adapter_dir: Path, adapters: dict[str, str]) -> None:
    manifest = {"format": FORMAT, "mode": "per_task", "adapters": adapters}
    (Path(adapter_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2))


@dataclass
class Routing:
    """Which adapter answers each prompt."""

    adapters: dict[str, str]
    """Task -> adapter name."""
    router: TaskRouter | None

    def assign(self, prompts: Sequence[str], tasks: Sequence[str | None] | None = None) -> list[str]:
        """Adapter name per prompt: by the given task when it has an adapter, else by the learned router."""
        tasks = list(tasks) if tasks is not None else [None] * len(prompts)
        if len(tasks) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(tasks)} task ids")
        unknown = [i for i, t in enumerate(tasks) if t not in self.adapters]
        routed: dict[int, str] = {}
        if unknown:
            if self.router is not None:
                routed = dict(zip(unknown, self.router.predict([prompts[i] for i in unknown]), strict=True))
            elif len(self.adapters) == 1:
                routed = dict.fromkeys(unknown, next(iter(self.adapters)))
            else:
                raise TrainingError("these per-task adapters have no router: give each prompt's task")
        return [self.adapters[routed[i] if i in routed else tasks[i]] for i in range(len(prompts))]


def routing_of(model: Any) -> Routing | None:
    """The routing attached by :func:`load_task_adapters`, or ``None`` for a model with one adapter (or none)."""
    return getattr(model, ROUTING_ATTR, None)


def adapter_path(adapter_dir: Path, name: str) -> Path:
    return Path(adapter_dir) / ADAPTERS_DIR / name


def load_router(adapter_dir: Path) -> TaskRouter | None:
    path = Path(adapter_dir) / ROUTER_DIR
    return TaskRouter.load(path) if path.is_dir() else None


def load_task_adapters(base_model, adapter_dir: str | Path, *, is_trainable: bool = False):
    """``base_model`` with every task adapter of ``adapter_dir`` loaded (PEFT multi-adapter) and routing attached."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    manifest = read_manifest(adapter_dir)
    if manifest is None:
        raise TrainingError(f"{adapter_dir} holds no per-task adapters ({MANIFEST} missing)")
    adapters: dict[str, str] = dict(manifest["adapters"])
    if not adapters:
        raise TrainingError(f"{adapter_dir / MANIFEST} lists no adapters")
    model = None
    for name in adapters.values():
        path = adapter_path(adapter_dir, name)
        if not (path / "adapter_config.json").exists():
            raise TrainingError(f"adapter {name} listed in {adapter_dir / MANIFEST} is missing at {path}")
        try:
            if model is None:
                model = PeftModel.from_pretrained(base_model, str(path), adapter_name=name, is_trainable=is_trainable)
            else:
                model.load_adapter(str(path), adapter_name=name, is_trainable=is_trainable)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"cannot load adapter {name} from {path}: {exc}") from None
    try:
        router = load_router(adapter_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot load the router of {adapter_dir}: {exc}") from None
    setattr(model, ROUTING_ATTR, Routing(adapters, router))
    return model


def adapter_kwargs(model: Any, prompts: Sequence[str], tasks: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Keyword arguments for a forward pass or generation on a batch of ``prompts`` that send each one
    through its adapter (PEFT mixed-batch inference); ``{}`` for a model with a single adapter."""
    routing = routing_of(model)
    return {"adapter_names": routing.assign(prompts, tasks)} if routing is not None else {}


# --- what a screen may read without loading a model ----------------------------------------------------------


@dataclass(frozen=True)
class AdapterFacts:
    """One LoRA adapter as its files describe it."""

    name: str
    rank: int | None
    """LoRA ``r`` from ``adapter_config.json`` (None: unreadable)."""
    alpha: float | None
    target_modules: list[str]
    size_bytes: int | None
    """Size of its weights file (None: missing)."""


def adapter_facts(path: Path, name: str) -> AdapterFacts:
    """Rank, alpha, targets and weight size of the PEFT adapter saved at ``path`` (no torch, no model)."""
    path = Path(path)
    rank = alpha = None
    targets: list[str] = []
    try:
        conf = json.loads((path / "adapter_config.json").read_text())
        rank = int(conf["r"]) if conf.get("r") is not None else None
        alpha = float(conf["lora_alpha"]) if conf.get("lora_alpha") is not None else None
        raw = conf.get("target_modules") or []
        targets = sorted(raw) if isinstance(raw, list) else [str(raw)]
    except (OSError, ValueError, TypeError, KeyError):
        pass
    weights = [p for p in (path / "adapter_model.safetensors", path / "adapter_model.bin") if p.is_file()]
    return AdapterFacts(name, rank, alpha, targets, weights[0].stat().st_size if weights else None)


def held_out_mask(router: TaskRouter) -> Any:
    """Which remembered rows the router held out of its fit: the split ``TaskRouter._fit_memory`` made (same keys,
    same fraction, every task keeping one training row), so counts on them are measured on unseen prompts."""
    import numpy as np

    memory = router.memory
    fraction = float(router.settings.get("holdout_fraction", 0.2))
    held = (memory.keys % 10_000) < fraction * 10_000
    for t in range(len(memory.tasks)):
        if not (~held & (memory.labels == t)).any():
            held[memory.labels == t] = False
    return np.asarray(held, dtype=bool)


def routing_counts(router: TaskRouter, predictor: TaskRouter | None = None) -> dict[str, dict[str, int]]:
    """True task -> {task whose adapter answers: prompts} over ``router``'s held-out remembered prompts, routed by
    ``predictor`` (default ``router`` itself; a refitted router may route the same prompts elsewhere)."""
    predictor = predictor or router
    held = held_out_mask(router)
    memory = router.memory
    if not held.any():
        return {}
    predicted = predictor._scores(memory.features[held]).argmax(1)
    out: dict[str, dict[str, int]] = {}
    for truth, guess in zip(memory.labels[held].tolist(), predicted.tolist(), strict=True):
        row = out.setdefault(memory.tasks[truth], {})
        name = predictor.tasks[guess]
        row[name] = row.get(name, 0) + 1
    return out
