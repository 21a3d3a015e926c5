"""The rollout and rollback on the real ``local`` serving backend: ``clm serve`` processes for two tiny registered
versions behind the router, on free loopback ports. A slot killed mid-canary, a planted bad version caught by the
online golden set, and a warm rollback, with the router's answers as the proof of what serves."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.deploy.golden import GoldenSet
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("serving_test_helpers", Path(__file__).parents[1] / "serving/helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

PROMPTS = ["my router drops wifi every evening", "I was billed twice this month", "thermostat shows E4"]


@pytest.fixture(scope="module")
def local(tmp_path_factory, tiny_base: Path, _mlflow_template: Path):
    """(cfg, backend): versions 1 and 2 registered (2 answers differently), evaluated alike; nothing serving yet."""
    import shutil

    import mlflow

    from clm_lib.registry.pyfunc import ClmModel
    from clm_lib.serving.backends import get_backend

    root = tmp_path_factory.mktemp("deploy-local")
    shutil.copy(_mlflow_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # other tests leave the process-wide registry URI on their own store
    experiment = mlflow.create_experiment("deploy-tests", artifact_location=str(root / "artifacts"))
    for seed in (0, 1):
        adapter = helpers.make_adapter(tiny_base, root / f"adapter-{seed}", seed)
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", python_model=ClmModel(), pip_requirements=["mlflow"],
                                    artifacts={"base": str(tiny_base), "adapter": str(adapter)},
                                    registered_model_name="clm-assistant")  # fmt: skip
    cfg = helpers.serving_cfg(root / "home", {"tracking_uri": uri, "base": tiny_base}, health_interval_s="0.2")
    cfg.database.url = f"sqlite:///{root / 'clm.db'}"
    cfg.deploy.bake_seconds, cfg.deploy.poll_seconds = 0.5, 0.1
    cfg.deploy.rules.min_requests = 5
    upgrade(cfg.database_url)
    with session_scope(cfg.database_url) as s:
        for v in ("1", "2"):
            s.add(TrainingRun(id=f"run-{v}", status="succeeded", base_model="b", config_hash="h", model_version=v))
            s.flush()
            s.add(Evaluation(training_run_id=f"run-{v}", model_version=v, tasks=["routers"], scores={"routers": 50.0},
                             matrix=[[50.0]], average_accuracy=50.0))  # fmt: skip
    backend = get_backend(cfg)
    try:
        yield cfg, backend
    finally:
        backend.shutdown()


def _served_by(backend, n: int = 6) -> set[str]:
    body = {"model": "clm-assistant", "prompt": PROMPTS[0], "max_tokens": 2}
    with httpx.Client(trust_env=False, timeout=60) as c:
        answers = [c.post(f"{backend.router_url}/v1/completions", json=body) for _ in range(n)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return {a.json()["model"] for a in answers}


def _slot_of(backend, version: str) -> str | None:
    return next((s for s, st in backend.status().items() if st.version == version), None)


def test_1_first_version_is_promoted_and_serves(local):
    cfg, be = local

    result = rollout(cfg, "1", actor="test", backend=be, golden=None)

    assert result.status == "promoted", result.outcome
    assert alias_version(cfg, CHAMPION) == "1" and _served_by(be) == {"clm-assistant/1"}


def test_2_a_slot_killed_mid_canary_rolls_back_and_the_champion_keeps_serving(local):
    cfg, be = local
    slow = cfg.model_copy(deep=True)
    slow.deploy.bake_seconds = 30.0  # the kill lands in the first bake window
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(r=rollout(slow, "2", backend=be, golden=None)))
    worker.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (_slot_of(be, "2") and be.weights()[_slot_of(be, "2")] == 10):
        time.sleep(0.1)
    slot = _slot_of(be, "2")
    assert slot and be.weights()[slot] == 10, "the canary never reached its first step"
    t0 = time.monotonic()
    os.kill(be.status()[slot].pid, signal.SIGKILL)
    worker.join(timeout=60)

    result = outcome["r"]
    assert result.status == "rolled_back", result.outcome
    assert time.monotonic() - t0 < 10, "the breach is seen at the next poll, not at the end of the 30 s window"
    assert be.weights()[slot] == 0 and alias_version(cfg, CHAMPION) == "1"
    assert _served_by(be) == {"clm-assistant/1"}


def test_3_a_planted_bad_version_fails_the_online_golden_set(local):
    cfg, be = local
    champion_slot = _slot_of(be, "1")
    url = f"{be.status()[champion_slot].url}/v1/completions"
    greedy = {"model": "clm-assistant", "max_tokens": 8, "temperature": 0}
    with httpx.Client(trust_env=False, timeout=60) as c:  # what the champion answers is the reference here
        answers = [c.post(url, json={**greedy, "prompt": p}).json() for p in PROMPTS]
    references = [a["choices"][0]["text"] for a in answers]
    golden = GoldenSet(model="clm-assistant", prompts=PROMPTS, references=references, max_tokens=8, timeout_s=60)

    result = rollout(cfg, "2", backend=be, golden=golden)

    assert result.status == "rolled_back", result.outcome
    assert "golden-set exact match" in result.outcome and "floor 75.0 (stable slot 100.0" in result.outcome
    assert alias_version(cfg, CHAMPION) == "1" and _served_by(be) == {"clm-assistant/1"}


def test_4_promotion_then_a_warm_rollback_flips_traffic_in_under_a_second(local):
    cfg, be = local
    assert rollout(cfg, "2", backend=be, golden=None).status == "promoted"
    assert _served_by(be) == {"clm-assistant/2"}

    result = rollback(cfg, actor="oncall", reason="test", backend=be)

    assert (result.from_version, result.to_version, result.warm) == ("2", "1", True)
    assert result.switch_ms < 1000
    assert alias_version(cfg, CHAMPION) == "1" and _served_by(be) == {"clm-assistant/1"}
