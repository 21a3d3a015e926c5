"""The rollback benchmark's stage: two registered, evaluated versions of the tiny demo model, promoted in turn with
``rollout()`` so the second is champion and the first warm in the other slot; a lean MLflow server as ``clm up``
starts it; and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

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
    mlflow_client = client(cfg)
    # Artifacts under the throwaway home, whichever way the registry is reached (never ./mlruns in the checkout).
    if mlflow_client.get_experiment_by_name("bench-rollback") is None:
        mlflow_client.create_experiment("bench-rollback", artifact_location=(cfg.home / "mlartifacts").as_uri())
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


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextmanager
def mlflow_server(store_uri: str, artifacts: Path, log: Path, *, start_timeout: float = 180, lifetime_s: float = 1800):
    """A real ``mlflow server`` started as ``clm up`` starts it (one worker, no job consumers, artifacts as plain
    files, the store by environment) on a free 127.0.0.1 port; yields its URL. Stopped on exit, whatever happens;
    it runs under ``timeout``, so it also stops by itself after ``lifetime_s`` seconds if this process is killed."""
    import httpx

    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    cmd = ["timeout", "-k", "10", str(int(lifetime_s)), sys.executable, "-m", "mlflow", "server",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--default-artifact-root", str(artifacts), "--no-serve-artifacts"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": store_uri}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # its own process group: the stop reaches uvicorn too
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + start_timeout
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"clm: error: mlflow server exited with code {proc.returncode} while starting; "
                                     f"log: {_tail(log)}")  # fmt: skip
                try:
                    if http.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"clm: error: mlflow server not healthy after {start_timeout:.0f} s; "
                                     f"log: {_tail(log)}")  # fmt: skip
                time.sleep(0.25)
        yield url
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            # The group may outlive its leader for a moment (uvicorn's worker): make sure it is gone too.
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)


def _tail(log: Path, n: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


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
