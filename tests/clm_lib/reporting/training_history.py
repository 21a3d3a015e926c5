"""Training runs as the pipeline records them, for the Training pipeline and Continual strategy screens and routes:
five runs started five different ways, their drift checks, step losses in ``train_summary.json`` and the records
the strategies left (``training_runs.strategies``)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport, TrainingRun

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script> billing hotfix"
LAST_CHECK = T0 + timedelta(days=3, minutes=17)
"""c3, the newest drift check."""

REPLAY_B = {
    "mix_ratio": 0.3, "effective_mix_ratio": 0.36, "policy": "task_balanced", "buffer_examples": 100,
    "buffer_tasks": {"routers": 100}, "task_weights": {"routers": 1.4}, "replayed": {"routers": 310},
    "replay_fraction": 0.31, "buffer_version": 1, "buffer_version_written": 2,
    "buffer_tasks_after": {"routers": 100, "billing": 100},
    "weights_from": "score changes at evaluation 1 of training run tr-a",
}  # fmt: skip
REPLAY_A = {"mix_ratio": 0.3, "buffer_tasks": {}, "replay_fraction": 0.0, "buffer_tasks_after": {"routers": 100},
            "weights_from": "configured (no evaluation compares two models yet)"}  # fmt: skip
EWC_B = {"strength": 500.0, "decay": 0.9, "normalize": "mean", "fisher_examples": 64, "prior_updates": 1,
         "pulled_parameters": 8, "fisher_raw_mean": 3.2e-7, "last_penalty": 0.0123}  # fmt: skip
DISTILLATION_B = {"weight": 0.5, "temperature": 2.0, "top_k": 50, "teacher": True, "last_loss": 0.21}
FREEZING_B = {
    "embeddings": True, "lowest_blocks": 1, "patterns": [], "frozen_parameters": 4, "frozen_numel": 2048,
    "trainable_numel": 6144, "frozen_modules": ["model.embed_tokens", "model.layers.0.self_attn.q_proj"],
}  # fmt: skip


def _summary(folder: Path, losses: list[float]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_summary.json").write_text(json.dumps({"run_id": folder.name, "losses": losses}))
    return str(folder)


def _report(check: str, at: datetime, detector: str, **kw) -> DriftReport:
    kw.setdefault("status", "ok")
    return DriftReport(check_id=check, detector=detector, created_at=at, n_reference=600, n_current=600,
                       explanation=kw.pop("explanation", f"{detector} in {check}"), **kw)  # fmt: skip


def seed_training(url: str, runs_dir: Path) -> None:
    """tr-a (volume, v1), tr-b (task_mix drift, v2, every strategy), tr-c (manual, hostile reason), tr-d (sensor,
    failed), tr-e (interrupted, nothing recorded): started a day apart, newest last."""
    plan = "requested by a drift check, with 300 new curated rows"
    with session_scope(url) as s:
        common = {"base_model": "models/base", "config_hash": "c0ffee", "airflow_dag_id": "clm_continual_training"}
        s.add_all(
            [
                TrainingRun(id="tr-a", status="succeeded", model_version="1", tasks=["routers"], new_rows=300,
                            trigger={"kind": "asset", "run_type": "asset_triggered", "drift_checks": ["c1"],
                                     "plan": plan},
                            strategies={"replay": REPLAY_A},
                            metrics={"steps": 50, "final_loss": 1.2, "replay_fraction": 0.0},
                            output_dir=_summary(runs_dir / "tr-a", [3.0 - i * 0.03 for i in range(50)]),
                            airflow_run_id="asset_triggered__2026-11-20T09:00:00", started_at=T0,
                            finished_at=T0 + timedelta(minutes=3), **common),
                TrainingRun(id="tr-b", status="succeeded", model_version="2", parent_model_version="1",
                            tasks=["routers", "billing"], new_rows=250, replay_rows=100, replay_version=1,
                            curated_version=4, previous_curated_version=2,
                            trigger={"kind": "asset", "run_type": "asset_triggered", "drift_checks": ["c2"],
                                     "plan": plan},
                            strategies={"replay": REPLAY_B, "ewc": EWC_B, "distillation": DISTILLATION_B,
                                        "freezing": FREEZING_B, "orthogonality": {"weight": 0.1, "last_penalty": 0.02}},
                            metrics={"steps": 1000, "final_loss": 0.4, "replay_fraction": 0.31},
                            output_dir=_summary(runs_dir / "tr-b", [2.0 / (1 + i / 100) for i in range(1000)]),
                            airflow_run_id="asset_triggered__2026-11-21T09:00:00", started_at=T0 + timedelta(days=1),
                            finished_at=T0 + timedelta(days=1, minutes=10, seconds=30), **common),
                TrainingRun(id="tr-c", status="succeeded", tasks=["routers", "billing"], new_rows=12,
                            trigger={"kind": "manual", "run_type": "manual", "reason": HOSTILE,
                                     "plan": "forced, with 12 new curated rows"},
                            metrics={"steps": 5, "final_loss": 0.9}, output_dir=str(runs_dir / "tr-c"),
                            airflow_run_id="manual__2026-11-22T09:00:00", started_at=T0 + timedelta(days=2),
                            finished_at=T0 + timedelta(days=2, minutes=1), **common),
                TrainingRun(id="tr-d", status="failed", tasks=["routers", "billing"], new_rows=40,
                            trigger={"kind": "manual", "run_type": "manual", "drift_checks": ["c3"],
                                     "reason": "drift check c3 requested a retraining"},
                            error="CUDA out of memory", airflow_run_id="manual__2026-11-23T09:30:00",
                            started_at=T0 + timedelta(days=3, minutes=30),
                            finished_at=T0 + timedelta(days=3, minutes=31), **common),
                TrainingRun(id="tr-e", status="interrupted", tasks=[], started_at=T0 + timedelta(days=4),
                            base_model="models/base", config_hash="c0ffee"),
            ]
        )  # fmt: skip
        s.flush()
        s.add_all(
            [
                _report("c1", T0 - timedelta(minutes=5), "volume", drift=True, statistic=300, threshold=200,
                        triggered=True, retrain_requested=True, training_run_id="tr-a"),
                _report("c1", T0 - timedelta(minutes=5), "task_mix", drift=None, status="insufficient data",
                        retrain_requested=True),
                _report("c2", T0 + timedelta(days=1) - timedelta(minutes=5), "task_mix", drift=True, statistic=193.7,
                        p_value=8.6e-43, threshold=0.01, triggered=True, retrain_requested=True,
                        training_run_id="tr-b", explanation="billing appeared: <b>new task</b>"),
                _report("c2", T0 + timedelta(days=1) - timedelta(minutes=5), "volume", drift=False, statistic=250,
                        threshold=2000, retrain_requested=True),
                _report("c3", LAST_CHECK, "text_stats", drift=True, statistic=0.4, p_value=2e-5, threshold=0.01,
                        triggered=True, retrain_requested=True),
            ]
        )  # fmt: skip


class _FakeAirflow(BaseHTTPRequestHandler):
    """Stands in for Airflow's REST API (no DAG can run here): records each request, answers as Airflow does."""

    seen: list[dict] = []
    answer = (200, {"dag_run_id": "manual__2026-12-07T10:00:00+00:00", "state": "queued"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        code, payload = type(self).answer
        raw = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@contextmanager
def fake_airflow_server():
    """A loopback HTTP server standing in for Airflow's REST API: the tests' Airflow DB has no clm DAG to run,
    so the trigger's request (path, the caller's token, body) is checked as it arrives instead."""
    _FakeAirflow.seen = []
    _FakeAirflow.answer = (200, {"dag_run_id": "manual__2026-12-07T10:00:00+00:00", "state": "queued"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeAirflow
    server.shutdown()
    server.server_close()
