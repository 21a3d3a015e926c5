"""The production profile runs the whole cycle (issue #14, item 5): `clm init --profile production` and `clm up`, with
the same DAG files as every other test, on

- PostgreSQL (127.0.0.1:5432) for Airflow's metadata, clm's database and MLflow's backend store,
- Airflow's CeleryExecutor, its broker the Redis on 127.0.0.1:6379 (a queue of this test's own), its worker started
  by `clm up`,
- an S3 server on loopback (moto's, standing in for MinIO) for the lake, the landing location and MLflow's artifacts.

Two drops go in through the S3 landing location; Airflow's scheduler, Asset events and Celery worker do the rest:
ingest, drift check, training (the second with replay read from the S3 lake), evaluation, registration, canary
promotion. Nothing of the cycle may land in the local home.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL
from tests.e2e.conftest import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

BUCKET = "clm-production-e2e"


def _drop_databases(names: list[str]) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def production(tmp_path_factory, s3_endpoint):
    from clm_lib.config import load_config
    from clm_lib.demo.stream import write_demo_drops
    from clm_lib.demo.walkthrough import run_walkthrough
    from clm_lib.services.airflow_client import AirflowClient

    tag = uuid.uuid4().hex[:8]
    databases = {role: f"clm_e2e_{tag}_{role}" for role in ("clm", "mlflow", "airflow")}
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    s3 = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    lake_options = {"aws_endpoint_url": s3_endpoint, "aws_access_key_id": "testing",
                    "aws_secret_access_key": "testing", "aws_region": "us-east-1",
                    "aws_allow_http": "true"}  # fmt: skip
    # The shipped profile, with this test's own databases, bucket and Celery queue (the broker may be shared).
    env = s3 | {
        "CLM_LAKE_STORAGE_OPTIONS": json.dumps(lake_options),
        "CLM_DATABASE_URL": f"{server}/{databases['clm']}",
        "CLM__REGISTRY__TRACKING_URI": f"{server}/{databases['mlflow']}",
        "CLM__SERVER__AIRFLOW_DATABASE_URL": f"{server}/{databases['airflow']}",
        "CLM__SERVER__CELERY__BROKER_URL": "redis://127.0.0.1:6379/15",
        "CLM__SERVER__CELERY__QUEUE": f"clm-e2e-{tag}",
        "CLM_DATA_URI": f"s3://{BUCKET}/lake",
        "CLM__PATHS__LANDING": f"s3://{BUCKET}/landing",
        "CLM__REGISTRY__ARTIFACTS_URI": f"s3://{BUCKET}/mlartifacts",
    }
    try:
        with (
            running_stack(tmp_path_factory, "clm-production", env, init_args=("--profile", "production")) as stack,
            pytest.MonkeyPatch.context() as mp,
        ):
            for key, value in s3.items() | {("CLM_LAKE_STORAGE_OPTIONS", env["CLM_LAKE_STORAGE_OPTIONS"])}:
                mp.setenv(key, value)  # this process uploads the drops to the S3 landing location
            cfg = load_config(environ=stack.env)
            drops = write_demo_drops(tmp_path_factory.mktemp("production-drops"), tasks=cfg.data.tasks[:2], seed=7)
            client = AirflowClient(stack.base_url, stack.username, stack.password)
            lines: list[str] = []
            started = time.monotonic()
            try:
                rows = run_walkthrough(cfg, client, drops, echo=lines.append, timeout_per_update=600)
            except Exception as exc:  # what the walkthrough printed is what tells why
                pytest.fail(f"{type(exc).__name__}: {exc}\n" + "\n".join(lines), pytrace=False)
            stack.timings["cycle_s"] = time.monotonic() - started
            yield stack, cfg, rows, lines, databases, server
    finally:
        _drop_databases(list(databases.values()))


def test_the_home_was_initialised_with_the_production_profile(production):
    stack, cfg, *_ = production
    assert (stack.home / "profile").read_text().strip() == "production"
    assert cfg.server.executor == "celery" and cfg.database_url.startswith("postgresql")
    status = json.loads(stack.clm("status", "--json").stdout)
    assert {row["component"]: row["healthy"] for row in status}["celery-worker"] is True, status


def test_two_drops_run_the_whole_cycle_to_promoted_versions(production):
    _stack, _cfg, rows, lines, *_ = production
    assert [r.version for r in rows] == ["1", "2"], lines
    assert rows[0].drift == "first data" and rows[1].drift.startswith("retrain: "), lines
    assert [r.gate for r in rows] == ["promoted -> champion (canary)"] * 2, lines
    assert rows[1].tasks == 2 and rows[1].replay_rows > 0, lines
    assert all(r.quarantined > 0 for r in rows), "the demo drops plant bad records; they must be quarantined"


def test_every_task_ran_on_the_celery_worker_from_this_stacks_queue(production):
    stack, cfg, _rows, _lines, databases, server = production
    engine = create_engine(f"{server}/{databases['airflow']}")
    with engine.connect() as conn:
        queues = Counter(q for (q,) in conn.execute(text("SELECT queue FROM task_instance WHERE state = 'success'")))
    engine.dispose()
    assert set(queues) == {cfg.server.celery.queue}, queues
    worker_log = (stack.home / "logs" / "celery-worker.log").read_text()
    ran = len(re.findall(r"Task execute_workload\[[0-9a-f-]+\] succeeded", worker_log))
    assert ran >= queues[cfg.server.celery.queue] > 10, (ran, queues)


def test_the_stores_are_postgresql_and_s3_and_nothing_landed_in_the_home(production):
    import boto3
    import mlflow
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import IngestionBatch

    stack, cfg, *_ = production
    with session_scope(cfg.database_url) as s:
        batches = s.scalars(select(IngestionBatch)).all()
        assert len(batches) == 2
        assert all(b.rows_in == b.rows_curated + b.rows_quarantined + b.rows_duplicate for b in batches)
    s3 = boto3.client("s3", endpoint_url=stack.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    tops = Counter("/".join(k.split("/")[:2]) for k in keys)
    for table in ("raw", "curated", "quarantine", "replay"):
        assert f"lake/{table}/_delta_log/00000000000000000000.json" in keys, sorted(tops)
    assert tops["landing/processed"] == 2 and tops["mlartifacts/clm"] > 0, tops
    registry = mlflow.MlflowClient(stack.mlflow_url)
    champion = registry.get_model_version_by_alias(cfg.registry.model_name, "champion")
    assert champion.version == "2"
    run = registry.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith(f"s3://{BUCKET}/mlartifacts/"), run.info.artifact_uri
    assert not {"lake", "mlartifacts", "mlruns", "clm.db", "mlflow.db"} & {p.name for p in stack.home.iterdir()}
    assert not (stack.home / "airflow" / "airflow.db").exists()
