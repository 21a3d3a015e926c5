"""``clm init`` makes the databases and the bucket of a profile exist: created once on the real PostgreSQL and the
loopback S3 server, found the second time, and a login that may not create them is told what to do."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from clm_lib.errors import ClmError
from clm_lib.services import stores
from tests.conftest import PG_ADMIN_URL
from tests.s3 import use_s3

SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


@pytest.fixture
def database_name():
    name = f"clm_stores_{uuid.uuid4().hex[:8]}"
    yield name
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres
def test_a_missing_database_is_created_once(database_name):
    url = f"{SERVER}/{database_name}"
    assert stores.ensure_postgres_database(url) is True
    assert stores.ensure_postgres_database(url) is False
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == database_name
    engine.dispose()


@pytest.mark.postgres
def test_a_login_that_may_not_create_is_told_what_to_do(database_name):
    url = f"{SERVER.replace('postgres@', 'clm_no_such_role:pw@')}/{database_name}"
    with pytest.raises(ClmError, match=r"cannot create or check database .*clm_no_such_role:\*\*\*@.*create it"):
        stores.ensure_postgres_database(url)


def test_only_postgresql_urls_and_s3_buckets_are_made(cfg):
    assert stores.postgres_urls(cfg, "sqlite:////tmp/airflow.db") == {}
    assert stores.s3_buckets(cfg) == []
    cfg.paths.lake, cfg.paths.landing, cfg.registry.artifacts_uri = "s3://a/lake", "s3://a/landing", "s3://b/ml"
    cfg.database.url = f"{SERVER}/clm"
    assert stores.s3_buckets(cfg) == ["a", "b"]
    assert list(stores.postgres_urls(cfg, "sqlite:////tmp/airflow.db")) == ["clm's database"]


def test_a_missing_bucket_is_created_once(s3_endpoint, monkeypatch):
    bucket = f"clm-stores-{uuid.uuid4().hex[:8]}"
    with use_s3(monkeypatch, s3_endpoint, "clm-stores-other") as s3:
        assert stores.ensure_bucket(bucket) is True
        assert stores.ensure_bucket(bucket) is False
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        s3.delete_bucket(Bucket=bucket)
