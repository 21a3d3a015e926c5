"""A clm home whose config any process can load from the environment, as Airflow's triggerer and workers do."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env_cfg(cfg, db_url, monkeypatch):
    """``cfg`` on ``db_url``, with CLM_CONFIG/CLM_HOME/CLM_DATABASE_URL set so ``load_config()`` finds the same."""
    monkeypatch.setenv("CLM_CONFIG", str(REPO / "include" / "clm.yaml"))
    monkeypatch.setenv("CLM_HOME", str(cfg.home))
    monkeypatch.setenv("CLM_DATABASE_URL", db_url)
    cfg.database.url = db_url
    return cfg


@pytest.fixture
def request_drift(env_cfg):
    """Store one drift check that requests a retraining; returns its decision."""
    from clm_lib.drift.config import DriftConfig
    from clm_lib.drift.monitor import run_drift_check

    def make(now):
        # The volume trigger alone requests it, so no detector needs data here.
        settings = DriftConfig(volume={"min_new_rows": 10})
        return run_drift_check(env_cfg, reference=[], current=[], new_rows=20, settings=settings, detectors=[],
                               now=now)
    return make


@pytest.fixture
def adapter_run(tmp_path, tiny_base, mlflow_uri, monkeypatch):
    """``(cfg, run_id)``: a succeeded training run on the tiny model whose adapter (LoRA, untrained: scores do not
    matter here) lies where a run leaves it, with routers records curated (a tenth held out for evaluation). The
    environment names the same config, so the operators resolve it as a task would."""
    import pyarrow as pa
    from peft import LoraConfig, get_peft_model

    from clm_lib.config import load_config
    from clm_lib.data import lake
    from clm_lib.db import session_scope, upgrade
    from clm_lib.db.models import TrainingRun
    from clm_lib.demo.stream import generate_task
    from clm_lib.modeling.load import load_model

    env = {
        "CLM_CONFIG": str(REPO / "include" / "tiny.yaml"),
        "CLM_HOME": str(tmp_path / "home"),
        "CLM__MODEL__BASE_PATH": str(tiny_base),
        "CLM_DATABASE_URL": f"sqlite:///{tmp_path / 'clm.db'}",
        "MLFLOW_TRACKING_URI": mlflow_uri,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config()
    upgrade(cfg.database_url)
    now = datetime.now(UTC)
    meta = {"source": "t", "batch_id": "b", "ingested_at": now, "metadata": "{}"}
    rows = [
        {**r, **meta, "id": f"r{i}", "line": i, "split": "eval" if i % 10 == 0 else "train"}
        for i, r in enumerate(generate_task("routers", 80, 1))
    ]
    lake.append(cfg, "curated", pa.Table.from_pylist(rows))

    output = tmp_path / "runs" / "tr-1"
    model, tokenizer = load_model(tiny_base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(output / "adapter")
    tokenizer.save_pretrained(output / "adapter")
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id="tr-1", status="succeeded", base_model=str(tiny_base), config_hash=cfg.config_hash(),
                          tasks=["routers"], output_dir=str(output), new_rows=72, replay_rows=0))  # fmt: skip
    return cfg, "tr-1"
