"""The databases and buckets a profile points at, made to exist by ``clm init`` where the login may create them.

A try-out of the production profile on one machine then needs no hand step; in production the databases and the
bucket usually exist already (a DBA's or a platform team's), and this only checks that they answer. A login that may
not create them gets an error that names what is missing, never a half-initialised home.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from clm_lib.config import ClmConfig
from clm_lib.errors import ClmError
from clm_lib.redaction import redact_url


@dataclass(frozen=True)
class Store:
    """One database or bucket, and whether ``clm init`` created it."""

    what: str
    where: str
    """Redacted: it is printed."""
    created: bool


def postgres_urls(cfg: ClmConfig, airflow_url: str) -> dict[str, str]:
    """The PostgreSQL databases this config uses, by role."""
    urls = {"clm's database": cfg.database_url, "MLflow's store": cfg.tracking_uri, "Airflow's database": airflow_url}
    return {what: url for what, url in urls.items() if url.startswith("postgresql")}


def ensure_postgres_database(url: str) -> bool:
    """Create the database ``url`` names when it does not exist (on the server's ``postgres`` database, with the
    same login); True when it was created."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ClmError(f"{redact_url(url)} names no database")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            # An identifier cannot be a bound parameter: quote it as PostgreSQL does ("" escapes ").
            conn.execute(text('CREATE DATABASE "{}"'.format(name.replace('"', '""'))))
            return True
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ClmError(f"cannot create or check database {name!r} on {redact_url(url)}: {first} "
                       "(create it beforehand, or give clm a login that may)") from None
    finally:
        admin.dispose()


def s3_buckets(cfg: ClmConfig) -> list[str]:
    """The buckets of every ``s3://`` location in this config: the lake, landing and MLflow's artifacts."""
    uris = [cfg.lake_uri, cfg.landing_uri, cfg.registry.artifacts_uri or ""]
    buckets = [u.split("://", 1)[1].split("/", 1)[0] for u in uris if u.startswith(("s3://", "s3a://"))]
    return list(dict.fromkeys(buckets))


def ensure_bucket(bucket: str) -> bool:
    """Create ``bucket`` when it does not exist; True when it was created."""
    from botocore.exceptions import BotoCoreError, ClientError

    from clm_lib.data.landing_s3 import client

    s3 = client()
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise ClmError(f"bucket {bucket!r}: {exc}") from None
    except BotoCoreError as exc:
        raise ClmError(f"bucket {bucket!r}: the object store does not answer ({exc})") from None
    try:
        s3.create_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise ClmError(f"cannot create bucket {bucket!r}: {exc} (create it beforehand, or give clm keys that may)") \
            from None
    return True


def ensure_stores(cfg: ClmConfig, airflow_url: str) -> list[Store]:
    """Every PostgreSQL database and bucket of this config, created where missing."""
    done = [Store(what, redact_url(url), ensure_postgres_database(url))
            for what, url in postgres_urls(cfg, airflow_url).items()]  # fmt: skip
    done += [Store("bucket", f"s3://{b}", ensure_bucket(b)) for b in s3_buckets(cfg)]
    return done
