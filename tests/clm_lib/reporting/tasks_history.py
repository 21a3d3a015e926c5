"""Two champions' worth of per-task history for the Multi-task screen and routes: version 1 learnt ``routers``,
version 2 (the champion) added ``billing`` with an adapter of its own and a real router; ingestion batches, a
replay buffer record and quarantined records of a task nobody configured (``solar``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, IngestionBatch, TrainingRun
from clm_lib.modeling.router import TaskRouter
from clm_lib.modeling.task_adapters import ADAPTERS_DIR, ROUTER_DIR, adapter_name, write_manifest

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOSTILE_TASK = "<b>x"
REPLAY = {"buffer_tasks_after": {"routers": 100, "billing": 60}, "task_weights": {"routers": 1.5, "billing": 1.0},
          "mix_ratio": 0.5, "policy": "task_balanced"}  # fmt: skip


def _prompts(task: str, words: list[str], n: int) -> list[str]:
    return [f"{words[i % len(words)]} {words[(i * 3 + 1) % len(words)]} question {i} about {task}" for i in range(n)]


ROUTERS_WORDS = ["router", "wifi", "firmware", "reboot", "ssid", "mesh", "bandwidth", "modem"]
BILLING_WORDS = ["invoice", "refund", "charge", "payment", "plan", "receipt", "router", "discount"]


def fitted_router() -> TaskRouter:
    prompts = {"routers": _prompts("devices", ROUTERS_WORDS, 60), "billing": _prompts("accounts", BILLING_WORDS, 60)}
    return TaskRouter.fit(prompts, examples_per_task=50, holdout_fraction=0.3, n_features=2**12)


def _adapter(folder: Path, rank: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 2 * rank,
                                                            "target_modules": ["v_proj", "q_proj"]}))  # fmt: skip
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * size)


def per_task_dir(root: Path, tasks: dict[str, int], router: TaskRouter | None) -> Path:
    """A per-task adapter folder: ``tasks`` -> rank (weights of 4 KiB per rank), the router if given."""
    out = root / "adapter"
    for task, rank in tasks.items():
        _adapter(out / ADAPTERS_DIR / adapter_name(task), rank, 4096 * rank)
    if router is not None:
        router.save(out / ROUTER_DIR)
    write_manifest(out, {t: adapter_name(t) for t in tasks})
    return out


def _register(cfg, version_aliases: dict[str, str | None]) -> None:
    from clm_lib.registry.mlflow_registry import client

    c = client(cfg)
    name = cfg.registry.model_name
    c.create_registered_model(name)
    for version, alias in version_aliases.items():
        assert str(c.create_model_version(name, source="file:///nowhere").version) == version
        if alias:
            c.set_registered_model_alias(name, alias, version)


def seed_tasks(cfg, root: Path, *, shared: bool = False) -> None:
    """v1 (routers) and v2 (routers + billing, champion); with ``shared`` v2 has one shared adapter instead."""
    _register(cfg, {"1": None, "2": "champion"})
    v1 = per_task_dir(root / "run-1", {"routers": 8}, None)
    if shared:
        v2 = root / "run-2" / "adapter"
        _adapter(v2, 16, 65536)
    else:
        v2 = per_task_dir(root / "run-2", {"routers": 8, "billing": 4}, fitted_router())
    common = {"status": "succeeded", "base_model": "b", "config_hash": "h"}
    with session_scope(cfg.database_url) as s:
        s.add_all([
            TrainingRun(id="run-1", model_version="1", tasks=["routers"], output_dir=str(v1.parent), started_at=T0,
                        finished_at=T0 + timedelta(minutes=5), **common),
            TrainingRun(id="run-2", model_version="2", parent_model_version="1", tasks=["routers", "billing"],
                        output_dir=str(v2.parent), strategies={"replay": REPLAY}, started_at=T0 + timedelta(days=1),
                        finished_at=T0 + timedelta(days=1, minutes=5), **common),
        ])  # fmt: skip
        s.flush()
        s.add_all([
            Evaluation(training_run_id="run-1", model_version="1", tasks=["routers"], scores={"routers": 80.0},
                       matrix=[[80.0]], average_accuracy=80.0),
            Evaluation(training_run_id="run-2", model_version="2", tasks=["routers", "billing"],
                       scores={"routers": 77.5, "billing": 70.0}, matrix=[[80.0, None], [77.5, 70.0]],
                       average_accuracy=73.75, backward_transfer=-2.5),
        ])  # fmt: skip
        batch = {"source": "f", "source_format": "jsonl", "file_sha256": "0" * 64}
        s.add_all([
            IngestionBatch(id="b1", status="committed", task_counts={"routers": 300}, finished_at=T0, **batch),
            IngestionBatch(id="b2", status="committed", task_counts={"routers": 50, "billing": 250},
                           finished_at=T0 + timedelta(days=1), **batch),
            IngestionBatch(id="b3", status="failed", task_counts={"billing": 999}, finished_at=T0 + timedelta(days=2),
                           **batch),
            IngestionBatch(id="b4", status="committed", task_counts={HOSTILE_TASK: 3},
                           finished_at=T0 + timedelta(days=2), **batch),
        ])  # fmt: skip


def quarantine_solar(cfg, n: int = 3) -> None:
    """``n`` records of the unconfigured task ``solar`` in quarantine, as ingestion leaves them."""
    from clm_lib.data import lake
    from clm_lib.data.records import QUARANTINE_SCHEMA

    rows = [{"id": f"q{i}", "task": "solar", "prompt": "p", "response": "r", "metadata": "{}", "raw_text": None,
             "reason": "unknown_task", "detail": "task is not one of the configured tasks", "source": "f.jsonl",
             "line": i, "batch_id": "b9", "ingested_at": T0} for i in range(n)]  # fmt: skip
    lake.append(cfg, "quarantine", pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA))


def seeded_config(tmp_path: Path, monkeypatch, mlflow_template: Path):
    """clm's config pointed (through the environment, as the api-server reads it) at a fresh clm database and a copy
    of ``mlflow_template``, seeded with :func:`seed_tasks`."""
    import shutil

    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_tasks(cfg, tmp_path / "runs")
    return cfg
