"""The local runtime, for real: `clm up` gives a healthy Airflow + MLflow that listens on loopback only."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer", "mlflow", "kafka"}  # Kafka: conftest


def _status(stack) -> list[dict]:
    done = stack.clm("status", "--json")
    rows = json.loads(done.stdout)
    assert done.returncode == (0 if all(r["healthy"] for r in rows) else 1)
    return rows


def test_status_says_every_component_is_healthy(airflow_stack):
    rows = _status(airflow_stack)
    assert {r["component"] for r in rows} == COMPONENTS
    assert all(r["alive"] and r["healthy"] for r in rows), rows
    table = airflow_stack.clm("status")
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.count(" healthy") == len(COMPONENTS), table.stdout


def test_nothing_listens_beyond_loopback(airflow_stack):
    procs = airflow_stack.processes()
    listening = set()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            conns = p.net_connections("inet")
            listening |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    airflow_port = int(airflow_stack.base_url.rsplit(":", 1)[1])
    mlflow_port = int(airflow_stack.mlflow_url.rsplit(":", 1)[1])
    kafka_port = int(airflow_stack.env["CLM__INGEST__KAFKA__BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    assert {("127.0.0.1", airflow_port), ("127.0.0.1", mlflow_port), ("127.0.0.1", kafka_port)} <= listening
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening
    # The same, as the kernel reports it to `ss`.
    ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    pids = {p.pid for p in procs}
    ours = [line for line in ss.splitlines() if {int(x) for x in re.findall(r"pid=(\d+)", line)} & pids]
    assert len(ours) >= 2, ss
    assert all(line.split()[3].startswith(("127.0.0.1:", "[::1]:")) for line in ours), ours


def test_admin_credentials_get_a_token_that_the_api_accepts(airflow_stack):
    token = airflow_stack.token()
    req = urllib.request.Request(f"{airflow_stack.base_url}/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and "dags" in json.loads(resp.read())
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{airflow_stack.base_url}/api/v2/dags", timeout=30)
    assert anonymous.value.code in (401, 403)
    wrong = json.dumps({"username": airflow_stack.username, "password": "not-the-password"}).encode()
    bad = urllib.request.Request(
        f"{airflow_stack.base_url}/auth/token", data=wrong, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=30)
    assert refused.value.code == 401


def test_airflow_cli_works_with_the_stack_env(airflow_stack):
    done = airflow_stack.airflow("dags", "list", "-o", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    # Airflow may print warnings (graphviz missing, say) before the JSON line.
    dags = json.loads(next(ln for ln in reversed(done.stdout.splitlines()) if ln.startswith(("[{", "[]"))))
    assert all(Path(d["fileloc"]).parent == REPO / "dags" for d in dags), dags
    if any((REPO / "dags").glob("*.py")):
        assert dags, "the repo's dags/ folder is what Airflow parses"


def test_up_again_changes_nothing(airflow_stack):
    before = {r["component"]: r["pid"] for r in _status(airflow_stack)}
    done = airflow_stack.clm("up")
    assert done.returncode == 0 and "already running" in done.stdout
    assert {r["component"]: r["pid"] for r in _status(airflow_stack)} == before


def test_idle_memory_stays_small(airflow_stack):
    rows = {r["component"]: r for r in _status(airflow_stack)}
    mib = {name: round(r["pss_bytes"] / 2**20) for name, r in rows.items()}
    airflow = sum(v for k, v in mib.items() if k != "mlflow")
    print(f"\nidle PSS MiB: {mib}, Airflow total {airflow}, RSS total "
          f"{round(sum(r['rss_bytes'] for r in rows.values()) / 2**20)}")
    airflow_stack.timings["idle_pss_mib"] = sum(mib.values())
    # ~0.9 GiB measured for Airflow with parallelism 4; 32 LocalExecutor workers would be ~2 GiB.
    assert airflow < 1536, mib
    # The lean server (1 worker, no job consumers) is ~0.4 GiB; the default one is ~2.3 GiB.
    assert mib["mlflow"] < 800, mib
