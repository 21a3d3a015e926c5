"""A planted bad version for the demo: it passes the offline gate but answers wrongly once it serves.

It stands for a fault no offline evaluation can see, such as an artifact damaged or swapped between evaluation
and deployment: a copy of the champion's training run whose adapter weights are scrambled *after* the
champion's evaluation is copied onto it. The gate (which reads stored evaluations) lets it through; the canary's
online golden set, which asks the serving slot itself, must catch it and roll it back. Everything about it says
what it is: the training run's trigger, its MLflow tags (``clm.demo.planted``) and the audit log.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sqlalchemy import select

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun, utcnow
from clm_lib.errors import ClmError

PLANTED_REASON = "demo: planted bad version (the champion's adapter, scrambled after its evaluation was copied)"


def scramble_adapter(adapter_dir: Path, seed: int = 0) -> int:
    """Permute the rows of every LoRA ``B`` matrix under ``adapter_dir`` in place; returns the tensors changed.

    The shapes, file names and config stay valid, so the version loads and serves; only its answers go wrong.
    """
    generator = torch.Generator().manual_seed(seed)
    changed = 0
    for path in sorted(adapter_dir.rglob("adapter_model.safetensors")):
        tensors = load_file(str(path))
        for name, t in tensors.items():
            if "lora_B" in name and t.dim() == 2 and t.shape[0] > 1:
                tensors[name] = t[torch.randperm(t.shape[0], generator=generator)] * 4.0
                changed += 1
        save_file(tensors, str(path), metadata={"format": "pt"})
    return changed


def plant_bad_version(cfg: ClmConfig, *, actor: str = "demo") -> str:
    """Register a scrambled copy of the champion as the challenger; returns its model version."""
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version, client, register_run

    champion = alias_version(cfg, CHAMPION)
    if champion is None:
        raise ClmError("no champion to copy: the planted version needs one promoted model first")
    run_id = f"planted-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    with session_scope(cfg.database_url) as s:
        source = s.scalars(select(TrainingRun).where(TrainingRun.model_version == champion)).first()
        evaluation = s.scalars(
            select(Evaluation).where(Evaluation.model_version == champion).order_by(Evaluation.id.desc())
        ).first()
        if source is None or evaluation is None or not source.output_dir:
            raise ClmError(f"champion {champion} has no training run with an adapter and an evaluation to copy")
        out = cfg.models_dir / "runs" / run_id
        shutil.copytree(Path(source.output_dir) / "adapter", out / "adapter")
        changed = scramble_adapter(out / "adapter")
        s.add(
            TrainingRun(
                id=run_id, status="succeeded", trigger={"kind": "demo", "reason": PLANTED_REASON},
                parent_model_version=champion, base_model=source.base_model, config_hash=source.config_hash,
                curated_version=source.curated_version, previous_curated_version=source.previous_curated_version,
                replay_version=source.replay_version, new_rows=0, replay_rows=0, tasks=list(source.tasks),
                output_dir=str(out), finished_at=utcnow(), metrics={"scrambled_tensors": changed},
            )
        )  # fmt: skip
        s.flush()
        s.add(
            Evaluation(
                training_run_id=run_id, tasks=list(evaluation.tasks), scores=dict(evaluation.scores),
                matrix=list(evaluation.matrix), average_accuracy=evaluation.average_accuracy,
                backward_transfer=evaluation.backward_transfer,
            )
        )  # fmt: skip
        audit.record(s, action="demo.planted_version", target=f"training_run/{run_id}", actor=actor,
                     reason=PLANTED_REASON, details={"copied_from_version": champion, "scrambled_tensors": changed})
    version = register_run(cfg, run_id, actor=actor)
    client(cfg).set_model_version_tag(cfg.registry.model_name, version, "clm.demo.planted", "true")
    return version
