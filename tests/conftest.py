"""Shared fixtures: a clm home in a temp folder, clm's database on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The plugin package lives in plugins/ (Airflow puts that folder on sys.path; so do the tests).
sys.path.insert(0, str(REPO / "plugins"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# The audit log's HMAC key (clm_lib/audit.py): a throwaway one, so no test writes a key file into the checkout.
os.environ.setdefault("CLM_AUDIT_KEY", "test-audit-key-" + os.urandom(8).hex())
# Keep Airflow (imported by DAG and plugin tests) away from ~/airflow: a throwaway home per test session.
if "AIRFLOW_HOME" not in os.environ:
    import tempfile

    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="clm-test-airflow-")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

E2E = REPO / "tests" / "e2e"
OWN_STACK = ("tests/e2e/test_production_profile.py",)
"""e2e files that start a stack of their own instead of sharing the session's."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The e2e files go first: under `pytest -n` (make test) they are the longest unit of work (see below).
    items.sort(key=lambda item: not item.path.is_relative_to(E2E))  # stable: every file keeps its order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``pytest -n N`` (``make test``) a file's tests stay on one worker, in order (module fixtures, numbered
    steps), and every e2e test shares one worker and its one stack, which mostly waits on Airflow while the other
    worker runs the rest; a file in ``OWN_STACK`` starts a stack of its own and goes to whichever worker is free.
    (``--dist loadgroup`` would say the same with marks, but xdist 3.8 cannot rename pytest 9's node ids, so its
    groups are silently ignored.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByFileE2eTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "e2e" if path.startswith("tests/e2e/") and path not in OWN_STACK else path

    return ByFileE2eTogether(config, log)


PG_ADMIN_URL = os.environ.get("CLM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def clm_home(tmp_path: Path) -> Path:
    return tmp_path / "clm-home"


@pytest.fixture
def cfg(clm_home: Path):
    """The shipped default config with every store under a temp home."""
    from clm_lib.config import load_config

    return load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(clm_home)})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"clm_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from clm_lib.db import get_engine

        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path) -> str:
    """clm's database migrated to head, on each backend clm supports."""
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory) -> Path:
    """An MLflow SQLite store migrated once: creating one costs seconds, copying it costs nothing."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, _mlflow_template: Path) -> str:
    """A fresh, empty MLflow tracking + registry store for one test."""
    import shutil

    target = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template, target)
    return f"sqlite:///{target}"


TINY = REPO / "include" / "tiny.yaml"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on loopback (moto's standalone server), for the object-store paths.

    In its own process: deltalake's ``DeltaTable.is_deltatable`` holds the GIL while it waits on S3, so a server
    thread in the test process could not answer it (each call then hangs until delta-rs' timeout)."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto's S3 server did not start on {url}") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The tiny demo base model (``include/tiny.yaml``), built once per test session and shared."""
    from clm_lib.config import load_config
    from clm_lib.modeling.build import ensure_base_model

    root = tmp_path_factory.getbasetemp()
    cfg = load_config(TINY, environ={"CLM_HOME": str(root), "CLM__MODEL__BASE_PATH": str(root / "tiny-base")})
    return ensure_base_model(cfg)


@pytest.fixture
def tiny_cfg(tmp_path: Path, tiny_base: Path):
    """tiny.yaml with its own home and the shared base model."""
    from clm_lib.config import load_config

    return load_config(TINY, environ={"CLM_HOME": str(tmp_path / "home"), "CLM__MODEL__BASE_PATH": str(tiny_base)})


@pytest.fixture
def register_version():
    """``register_version(cfg, scores=None, *, challenger=True) -> version``: a registered model version with its
    evaluation in clm's DB, as training + evaluation + registration leave it, but without an artifact (for code
    that moves aliases and gates, never loads the model)."""
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.registry.aliases import CHALLENGER
    from clm_lib.registry.mlflow_registry import client, move_alias

    def register(cfg, scores: dict[str, float] | None = None, *, challenger: bool = True) -> str:
        scores = scores or {"routers": 90.0}
        c = client(cfg)
        name = cfg.registry.model_name
        if not c.search_registered_models(filter_string=f"name='{name}'"):
            c.create_registered_model(name)
        version = str(c.create_model_version(name, source="file:///nowhere").version)
        with session_scope(cfg.database_url) as s:
            s.add(TrainingRun(id=f"run-{version}", status="succeeded", base_model="b", config_hash="h",
                              model_version=version, tasks=list(scores)))  # fmt: skip
            s.flush()
            s.add(Evaluation(training_run_id=f"run-{version}", model_version=version, tasks=list(scores),
                             scores=scores, matrix=[list(scores.values())], average_accuracy=90.0))  # fmt: skip
            if challenger:
                move_alias(cfg, s, CHALLENGER, version, actor="test", reason="candidate")
        return version

    return register
