"""Training under DeepSpeed: the same loop, with DeepSpeed's engine doing backward, clipping and the optimizer step.

ZeRO stages 0-2, configs in ``include/deepspeed/``. The loop's own AdamW and warmup-cosine schedule are handed to
DeepSpeed as client optimizer and scheduler, so results match plain PyTorch and no DeepSpeed optimizer op (CPU
Adam) is compiled. On CPU DeepSpeed still JIT-compiles one C++ op on first use, its shared-memory collective
``deepspeed_shm_comm`` (~30 s with g++ and ninja, measured; cached in ``~/.cache/torch_extensions``).

Values set to ``"auto"`` in a config (or left out) are filled in from ``training``: the batch sizes and
``gradient_clipping``. A config may not bring its own optimizer or scheduler, nor accumulate gradients (the loop
takes one optimizer step per batch).

Under the ``deepspeed`` launcher, ``RANK``/``WORLD_SIZE``/``MASTER_*`` come from it and every rank trains its own
share of each batch (data parallel); started any other way, clm sets up a group of one process on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm_lib.errors import TrainingError

if TYPE_CHECKING:
    from clm_lib.config import TrainingConfig
    from clm_lib.training.context import TrainContext

log = logging.getLogger(__name__)

AUTO = "auto"
_LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_OWN_OPTIMIZATION = ("optimizer", "scheduler")


def resolve_config_path(path: str | Path) -> Path:
    """A relative path is read from the clm source root (where ``include/`` is), unless it exists from here."""
    from clm_lib.config import REPO_ROOT

    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def world() -> tuple[int, int]:
    """(rank, world size) as the launcher set them; (0, 1) without a launcher."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def load_config(path: str | Path, training: TrainingConfig, world_size: int = 1) -> dict[str, Any]:
    """The DeepSpeed config at ``path`` with ``auto`` values filled in from ``training``."""
    path = resolve_config_path(path)
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise TrainingError(f"cannot read the DeepSpeed config {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise TrainingError(f"DeepSpeed config {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise TrainingError(f"DeepSpeed config {path} must be a JSON object")
    brought = [k for k in _OWN_OPTIMIZATION if k in config]
    if brought:
        raise TrainingError(
            f"DeepSpeed config {path} sets {', '.join(brought)}: clm trains with its own AdamW and schedule "
            "(training.learning_rate, warmup_steps, ...); remove them from the DeepSpeed config"
        )
    if training.batch_size < world_size:
        raise TrainingError(f"training.batch_size {training.batch_size} is smaller than the {world_size} ranks")
    micro = math.ceil(training.batch_size / world_size)
    filled = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro * world_size,
        "gradient_clipping": training.max_grad_norm,
        "steps_per_print": 10**9,  # the loop logs progress itself
    }
    for key, value in filled.items():
        if config.get(key, AUTO) == AUTO:
            config[key] = value
    if config["gradient_accumulation_steps"] != 1:
        raise TrainingError(f"DeepSpeed config {path}: gradient_accumulation_steps must be 1 or auto")
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2):
        raise TrainingError(f"DeepSpeed config {path}: ZeRO stage {stage} is not supported (0, 1 or 2)")
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group() -> None:
    """Set up torch.distributed for DeepSpeed: from the launcher's environment, else a group of one on loopback."""
    import deepspeed

    if not all(k in os.environ for k in _LAUNCHER_ENV):
        # In-process training (Airflow task, `clm train`, tests): one rank, nothing listens beyond 127.0.0.1.
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    deepspeed.init_distributed(auto_mpi_discovery=False, verbose=False)


def wrap(ctx: TrainContext, config: dict[str, Any]) -> None:
    """Hand ``ctx``'s model, optimizer and scheduler to a DeepSpeed engine; the loop then steps through it."""
    import deepspeed

    ensure_process_group()
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=ctx.model, optimizer=ctx.optimizer, lr_scheduler=ctx.scheduler, config=config
    )
    ctx.engine, ctx.optimizer = engine, optimizer
    ctx.scheduler = scheduler if scheduler is not None else ctx.scheduler
    ctx.rank, ctx.world_size = engine.global_rank, engine.world_size
    log.info(
        "training under DeepSpeed ZeRO-%s, rank %d of %d",
        config.get("zero_optimization", {}).get("stage", 0),
        ctx.rank,
        ctx.world_size,
    )


def barrier(ctx: TrainContext) -> None:
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
