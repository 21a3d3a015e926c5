"""Fault campaign: SIGKILL a real ingest process at each step, run ingestion again, check nothing was lost
or written twice. The table of steps and outcomes is in docs/reliability.md ("Ingest")."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_landing
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import IngestionBatch

SECRET = "s3cret-admin-passw0rd"
CHILD = "from clm_lib.config import load_config; from clm_lib.data.ingest import ingest_landing; " \
        "ingest_landing(load_config())"


def _record(i, task="routers"):
    return {"task": task, "prompt": f"My router {i} drops the connection every evening, what can I do?",
            "response": f"Update the firmware and move it away from the microwave (ticket {i})."}


def _new_home(path):
    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(path)})
    cfg.landing_dir.mkdir(parents=True)
    upgrade(cfg.database_url)
    _drop(cfg)
    return cfg


def _drop(cfg):
    """Four landing entries, oldest first: overlapping records across formats, bad lines, and a symlink."""
    landing = cfg.landing_dir
    lines = [json.dumps(r) for r in (*(_record(i) for i in range(10)), _record(3), {"task": "routers"})]
    (landing / "a.jsonl").write_text("\n".join([*lines, "{broken"]) + "\n")
    body = "".join(f'routers,"{_record(i)["prompt"]}","{_record(i)["response"]}"\n' for i in range(5, 15))
    (landing / "b.csv").write_text("task,prompt,response\n" + body + "routers,too,many,fields\n")
    pq.write_table(pa.Table.from_pylist([_record(i, "billing" if i > 13 else "routers") for i in range(12, 17)]),
                   landing / "c.parquet")
    secret = cfg.home / "admin-credentials"
    secret.write_text(f"task,prompt,response\nrouters,password {SECRET},{SECRET}\n")
    (landing / "leak.csv").symlink_to(secret)
    for i, name in enumerate(("a.jsonl", "b.csv", "c.parquet", "leak.csv")):
        os.utime(landing / name, (1000 + i, 1000 + i), follow_symlinks=False)


def _outcome(cfg):
    """Per file: (status, in, curated, quarantined, duplicate), and where each landing entry ended."""
    with session_scope(cfg.database_url) as s:
        batches = {os.path.basename(b.source): (b.status, b.rows_in, b.rows_curated, b.rows_quarantined,
                                                b.rows_duplicate, b.id) for b in s.scalars(select(IngestionBatch))}
    places = {p.name: p.parent.name for p in cfg.landing_dir.rglob("*") if not p.is_dir()}
    return batches, places


def _check_invariants(cfg):
    batches, places = _outcome(cfg)
    assert set(batches) == {"a.jsonl", "b.csv", "c.parquet", "leak.csv"}
    raw, curated, quarantine = (lake.read_table(cfg, t) for t in ("raw", "curated", "quarantine"))
    raw_per, cur_per, q_per = (Counter(t["batch_id"].to_pylist()) for t in (raw, curated, quarantine))
    for name, (status, rows_in, cur, quar, dup, batch_id) in batches.items():
        assert status == "committed", name
        assert rows_in == cur + quar + dup, name
        assert (cur_per[batch_id], q_per[batch_id]) == (cur, quar), name  # each table written once
        assert raw_per[batch_id] == (0 if name == "leak.csv" else rows_in), name
    ids = curated["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a record was curated twice"
    everything = "\n".join(str(v) for t in (raw, curated, quarantine) for c in t.columns for v in c.to_pylist())
    assert SECRET not in everything
    assert places == {"a.jsonl": "processed", "b.csv": "processed", "c.parquet": "processed",
                      "leak.csv": "failed", "leak.csv.error.txt": "failed"}
    return {name: b[:5] for name, b in batches.items()}


def _child(cfg, fault: str | None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLM")}
    env.update(CLM_HOME=str(cfg.home), CLM_CONFIG=str(REPO_ROOT / "include" / "clm.yaml"))
    if fault:
        env["CLM_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """What the same drop becomes when ingested without any fault."""
    cfg = _new_home(tmp_path_factory.mktemp("baseline"))
    ingest_landing(cfg)
    return _check_invariants(cfg)


# Every step of ingest_landing at which a kill leaves a distinct state; "@N": the N-th time it is reached
# (files are ingested a, b, c, then the symlink, so @2 is inside b.csv and @4 is the refused symlink).
POINTS = [
    "ingest.after_start@1",
    "ingest.after_raw_commit@1",
    "ingest.after_curated_commit@1",
    "ingest.after_quarantine_commit@1",
    "ingest.after_db_commit@1",
    "ingest.after_move@1",
    "ingest.after_raw_commit@2",
    "ingest.after_curated_commit@2",
    "ingest.after_quarantine_commit@4",
    "ingest.after_db_commit@4",
    "ingest.after_move@4",
]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_step_then_a_rerun_loses_nothing_and_writes_nothing_twice(point, tmp_path, expected):
    cfg = _new_home(tmp_path / "home")
    killed = _child(cfg, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"fault injected at {point.split('@')[0]}" in killed.stderr
    ingest_landing(cfg)  # the normal retry: the next scheduled run
    assert _check_invariants(cfg) == expected


@pytest.mark.slow
def test_a_file_killed_twice_goes_to_failed_and_the_rest_is_ingested(tmp_path):
    """An out-of-memory kill while reading, twice: the batch stays "running" each time."""
    cfg = _new_home(tmp_path / "home")
    for _ in range(2):
        killed = _child(cfg, "ingest.after_start@1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    results = ingest_landing(cfg)
    assert [(os.path.basename(r.source), r.status) for r in results] == [
        ("a.jsonl", "failed"), ("b.csv", "committed"), ("c.parquet", "committed"), ("leak.csv", "committed"),
    ]
    error = (cfg.landing_dir / "failed" / "a.jsonl.error.txt").read_text()
    assert "crashed 2 times" in error and "interrupted" in error
    with session_scope(cfg.database_url) as s:
        a = s.scalars(select(IngestionBatch).where(IngestionBatch.source.endswith("a.jsonl"))).one()
        assert a.status == "gave_up" and a.id not in lake.read_table(cfg, "raw")["batch_id"].to_pylist()
