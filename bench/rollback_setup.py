"""The rollback benchmark's stage: two registered, evaluated versions of the tiny demo model, promoted in turn with
``rollout()`` so the second is champion and the first warm in the other slot; and a throwaway PostgreSQL database."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

# Promotions that only set the stage: one traffic step, a bake short enough not to matter; nothing else contends
# for the deploy lock, so a wait on it means something is wrong.
DEPLOY = {"STRATEGY": "blue_green", "BAKE_SECONDS": "0.3", "POLL_SECONDS": "0.1", "LOCK_WAIT_SECONDS": "10"}


def register_versions(cfg, n: int = 2) -> list[str]:
    """Register ``n`` versions of the tiny base model with distinct random LoRA adapters, each with an
    evaluation in clm's database (the gate reads it), as training + evaluation + registration leave them."""
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model

    from clm_lib.db import session_scope, upgrade
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.modeling.build import ensure_base_model
    from clm_lib.modeling.load import load_model
    from clm_lib.registry.mlflow_registry import client
    from clm_lib.registry.pyfunc import ClmModel

    base = ensure_base_model(cfg)
    client(cfg)
    experiment = mlflow.set_experiment("bench-rollback")
    upgrade(cfg.database_url)
    versions = []
    for seed in range(n):
        model, tokenizer = load_model(base)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        adapter = cfg.home / "bench-adapters" / f"adapter-{seed}" / "adapter"
        peft_model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ClmModel(),
                artifacts={"base": str(base), "adapter": str(adapter)},
                pip_requirements=["mlflow"],
                registered_model_name=cfg.registry.model_name,
            )
        version = str(info.registered_model_version)
        with session_scope(cfg.database_url) as s:
            s.add(TrainingRun(id=f"bench-{version}", status="succeeded", base_model=str(base), config_hash="bench",
                              model_version=version, tasks=["routers"]))  # fmt: skip
            s.flush()
            s.add(Evaluation(training_run_id=f"bench-{version}", model_version=version, tasks=["routers"],
                             scores={"routers": 50.0}, matrix=[[50.0]], average_accuracy=50.0))  # fmt: skip
        versions.append(version)
    return versions


def promote_both(cfg, backend, versions: list[str]) -> None:
    """``rollout()`` the first version, then the second: the second is champion, the first warm and previous."""
    from clm_lib.deploy.rollout import rollout

    for version in versions:
        result = rollout(cfg, version, actor="bench", reason="benchmark setup", backend=backend, golden=None)
        if result.status != "promoted":
            raise SystemExit(f"clm: error: setup promotion of version {version} ended {result.status}: "
                             f"{result.outcome}")  # fmt: skip


@contextmanager
def throwaway_postgres(server_url: str):
    """A fresh database on the server of ``server_url``, migrated to head; dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    from clm_lib.db import get_engine, upgrade

    name = f"clm_bench_rollback_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
