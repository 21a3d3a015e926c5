"""The rollback benchmark's bookkeeping on made-up request logs, its load generator against a stub server, and
one short end-to-end run (the timing targets are the benchmark's to judge, not these tests')."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rollback_load import LoadRun, Move, Request, analyse, percentile, section, summary, under_load

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("serving_test_helpers", REPO / "tests/clm_lib/serving/helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


def test_time_to_all_traffic_on_the_new_version_drain_and_late_requests():
    moves = [Move(10.0, 10.300, "2", "1", {"switch_ms": 40.0}), Move(20.0, 20.010, "1", "2")]
    requests = [
        Request(9.99, 10.03, 200, "2"),  # in flight at the first call: finishes on the old version (drain)
        Request(10.02, 10.04, 200, "2"),  # sent during the call, before the switch
        Request(10.05, 10.07, 200, "1"),  # the first answer from the target after the last old one
        Request(10.06, 10.08, 200, "1"),
        Request(15.0, 15.01, 200, "1"),
        Request(19.99, 20.02, 200, "2"),  # in flight at the second call: routed by either; neither counts it
        Request(20.02, 20.05, 200, "1"),  # sent after the second call returned, answered by the old version: late
        Request(20.03, 20.04, 200, "2"),
    ]
    first, second = analyse(requests, moves)
    assert first == {"from": "2", "to": "1", "to_100_s": pytest.approx(0.05), "call_s": 0.3,
                     "drain_s": pytest.approx(0.04), "late": 0, "requests": 4, "switch_ms": 40.0}  # fmt: skip
    assert second["late"] == 1 and second["to_100_s"] == pytest.approx(0.03)  # after the late one, not the return
    assert second["drain_s"] == pytest.approx(0.05)


def test_a_move_the_clients_never_saw_complete_is_counted_not_timed():
    moves = [Move(1.0, 1.01, "1", "2")]
    requests = [Request(1.02, 1.03, 200, "1"), Request(1.04, 1.05, 0, None)]  # only the old version, then a failure
    (row,) = analyse(requests, moves)
    assert row["to_100_s"] is None
    out = section([row], LoadRun(requests, moves, 2.0, None))
    assert out["never_reached_100"] == 1 and out["to_100_s"] == {} and out["load"]["failed_requests"] == 1


def test_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.95) == 95.0
    assert summary([0.001, 0.002, 0.003], 1000.0) == {"p50": 2.0, "p95": 3.0, "max": 3.0, "mean": 2.0}


def _stub():
    """An app answering completions with the version of a mutable "live" slot, like the router."""
    from fastapi import FastAPI, Response

    app, live = FastAPI(), {"version": "1"}

    @app.post("/v1/completions")
    def complete() -> Response:
        return Response("{}", media_type="application/json", headers={"x-clm-version": live["version"]})

    return app, live


def test_the_load_sees_each_switch_and_stops_at_the_time_cap():
    import asyncio

    app, live = _stub()

    def move(i: int) -> Move:
        old, new = live["version"], "2" if live["version"] == "1" else "1"
        t0 = time.perf_counter()
        live["version"] = new
        return Move(t0, time.perf_counter(), old, new)

    with helpers.running(app) as url:
        run = asyncio.run(under_load(f"{url}/v1/completions", {}, move, moves=1000, interval=0.1, clients=2,
                                     max_requests=100_000, cap_s=0.6))  # fmt: skip
    assert 2 <= len(run.moves) < 1000 and run.stopped_early.startswith("time cap of 0.6 s")
    rows = analyse(run.requests, run.moves)
    assert all(r["to_100_s"] is not None and r["late"] == 0 for r in rows), rows
    assert run.requests and all(r.status == 200 for r in run.requests)
    assert run.seconds < 5


def test_a_failing_move_stops_the_clients_and_is_raised():
    import asyncio

    app, _ = _stub()

    def move(i: int) -> Move:
        raise RuntimeError("the deploy lock is busy")

    with helpers.running(app) as url, pytest.raises(RuntimeError, match="lock is busy"):
        asyncio.run(under_load(f"{url}/v1/completions", {}, move, moves=3, interval=0.05, clients=2,
                               max_requests=100_000, cap_s=30))  # fmt: skip


def _bench_module():
    spec = importlib.util.spec_from_file_location("clm_bench_rollback_test", REPO / "bench" / "rollback.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    return bench


def test_arguments_are_checked(capsys):
    bench = _bench_module()
    with pytest.raises(SystemExit):
        bench.main(["--rollbacks", "0"])
    assert "at least 1 rollback" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--database-url", "sqlite:///x.db"])
    assert "must be a PostgreSQL server URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--registry", "s3"])
    assert "invalid choice: 's3'" in capsys.readouterr().err


def test_import_times_of_a_cli_process_count_top_level_imports_and_mlflow_s():
    bench = _bench_module()
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        300 |   sqlalchemy.sql",
        "import time:       200 |     500000 | sqlalchemy",
        "import time:        50 |         50 |   mlflow",  # inside another import: counted with it, not again
        "import time:       300 |    1500000 | mlflow.exceptions",  # at run time, in a function: top level
        "Traceback? no: other stderr lines are ignored",
    ])  # fmt: skip
    assert bench._import_times(stderr) == {"imports_s": 2.0, "mlflow_import_s": 1.5}


@pytest.mark.slow
def test_a_short_run_rolls_back_for_real_with_both_registries_and_the_cli(tmp_path, tiny_base):
    """A real `mlflow server` and the SQLite store behind it; rollout() twice, then rollback() under load with each
    registry, one `clm rollback` process and raw switches: about 1.5-2 min on two busy cores."""
    out, home = tmp_path / "rollback.json", tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    argv = ["--registry", "both", "--rollbacks", "2", "--cli-rollbacks", "1", "--switches", "2",
            "--interval", "0.3", "--overhead-requests", "20", "--base-model", str(tiny_base), "--home", str(home),
            "--out", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "rollback.py"), *argv], capture_output=True,
                          text=True, env=env, timeout=420, check=False)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: a timing target missed
    result = json.loads(out.read_text())

    assert result["registries"] == ["file", "server"]
    for registry in ("file", "server"):
        rb = result["rollback"][registry]["sqlite"]
        assert [(m["from"], m["to"]) for m in rb["per_move"]] == [("2", "1"), ("1", "2")]
        assert rb["never_reached_100"] == 0 and rb["late_requests"] == 0 and rb["stopped_early"] is None
        assert all(m["warm"] and m["switch_ms"] > 0 and m["call_s"] * 1000 >= m["switch_ms"] for m in rb["per_move"])
        assert all(m["set_weights_at_ms"] is not None for m in rb["per_move"])
        assert rb["records"]["rollback_deployments"] == 2 and rb["records"]["champion_after"] == "2"
    server = result["rollback"]["server"]["sqlite"]["per_move"]
    assert all(m["mlflow_http"] >= 1 for m in server), server  # through the server, and counted
    assert all(m["mlflow_http"] == 0 for m in result["rollback"]["file"]["sqlite"]["per_move"])

    cli = result["cli_rollback"]
    assert cli["registry"] == "server" and cli["never_reached_100"] == 0 and cli["late_requests"] == 0
    (move,) = cli["per_move"]
    assert (move["from"], move["to"]) == ("2", "1") and move["warm"] and move["switch_ms"] > 0
    assert move["process_s"] >= move["to_100_s"] > move["start_s"] > 0 and move["imports_s"] > 0
    assert cli["process_only"]["clm_rollback_help_s"]["p50"] > 0
    assert result["weight_switch"]["moves"] == 2 and result["weight_switch"]["never_reached_100"] == 0
    assert result["failed_requests"] == 0 and result["requests"] > 0
    assert not _processes_of(home), "the benchmark left its serving processes or its MLflow server running"


def _processes_of(home: Path) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter():
        try:
            environ = proc.environ()
            if environ.get("CLM_HOME") == str(home) or str(home) in environ.get("MLFLOW_BACKEND_STORE_URI", ""):
                pids.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return pids
