"""The Integrations screen: every outside system clm talks to, whether it answers now, how fast, since when it
does not, and where it is configured. Never a secret: addresses go through :func:`redact_url`, errors through
:func:`~clm_lib.reporting.stores.first_line`.

Each check is bounded (:data:`TIMEOUT_S`) and they run side by side, so the page answers in about that time even
when every system is down. "Since when" is the first failure this process saw since the system last answered
(:func:`clm_lib.reporting.stores.down`, shared with the other screens' store-down messages).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from clm_lib.config import DEFAULT_CONFIG, ENV_PREFIX, WELL_KNOWN_ENV, ClmConfig
from clm_lib.reporting import stores
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import first_line, missing_sqlite, redact_url
from clm_lib.services.health import MLFLOW_HEALTH_PATH, broker_problem, http_ok

TIMEOUT_S = 2.0
"""Per check: a dead system costs the page this long, never more."""
State = Literal["reachable", "unreachable", "not configured"]
GPU = "nvidia.com/gpu"
CONNECTION = "clm_default"
CONNECTION_KEYS = {
    "CLM_DATABASE_URL": "database_url", "MLFLOW_TRACKING_URI": "tracking_uri", "CLM_DATA_URI": "data_uri",
}  # fmt: skip
"""Environment variable -> key of the ``clm_default`` connection's extra that sets it
(``clm_lib.airflow.settings.CONNECTION_KEYS``, reversed)."""


@dataclass(frozen=True)
class Integration:
    """One store or service clm depends on, as checked now."""

    __pydantic_config__ = DOCUMENTED

    name: str
    state: str
    """reachable, unreachable or not configured."""
    detail: str
    address: str
    """Where it is, credentials removed ("" when not configured)."""
    configured_in: str
    """Which setting says so: the ``clm_default`` connection, an environment variable, the config file, a default."""
    latency_ms: float | None
    """How long the check took (None when nothing was checked)."""
    since: datetime | None
    """Unreachable since (as this process saw it); None when reachable or not configured."""


@dataclass(frozen=True)
class IntegrationsPage:
    """Every integration's state."""

    __pydantic_config__ = DOCUMENTED

    generated_at: datetime
    integrations: list[Integration]


@dataclass(frozen=True)
class _Check:
    name: str
    address: str
    configured_in: str
    probe: Callable[[], str | None] | None
    """None when not configured; else returns None when it answers, or why not. Raising is "unreachable" too."""
    detail: str


def build_integrations(
    cfg: ClmConfig, *, connection: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> IntegrationsPage:
    """Check every integration of ``cfg``. ``connection``: the environment variables the Airflow connection
    ``clm_default`` sets (``clm_lib.airflow.settings.connection_overrides``), to say where a store is configured."""
    connection = dict(connection or {})
    environ = dict(os.environ if environ is None else environ)
    checks = [
        _mlflow(cfg, connection, environ), _database(cfg, connection, environ), _lake(cfg, connection, environ),
        _kafka(cfg), _celery(cfg), _kubernetes(cfg), _gpu(cfg),
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        done = list(pool.map(_run, checks))
    return IntegrationsPage(datetime.now(UTC), done + alert_channels(cfg))


def _run(check: _Check) -> Integration:
    if check.probe is None:
        return Integration(check.name, "not configured", check.detail, check.address, check.configured_in, None, None)
    started = time.perf_counter()
    try:
        problem = check.probe()
    except Exception as exc:  # a failing client is a state of the page
        problem = first_line(exc)
    latency = round((time.perf_counter() - started) * 1000, 1)
    if problem is None:
        stores.up(check.name)
        return Integration(check.name, "reachable", check.detail, check.address, check.configured_in, latency, None)
    since = stores.down(check.name, problem).since
    return Integration(check.name, "unreachable", problem, check.address, check.configured_in, latency, since)


def configured_in(env: str, default: bool, connection: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """Which setting decides the value behind ``env`` (one of :data:`clm_lib.config.WELL_KNOWN_ENV`), in the
    resolver's order of precedence (highest first)."""
    if env in connection:
        return f"Airflow connection {CONNECTION} (extra.{CONNECTION_KEYS[env]})"
    generic = ENV_PREFIX + "__".join(p.upper() for p in WELL_KNOWN_ENV[env])
    if environ.get(generic):
        return f"environment ${generic}"
    if environ.get(env):
        return f"environment ${env}"
    if default:
        return "default (under CLM_HOME)"
    return f"config file {environ.get('CLM_CONFIG') or DEFAULT_CONFIG}"


# --- the checks -------------------------------------------------------------------------------------


def _mlflow(cfg: ClmConfig, connection, environ) -> _Check:
    uri = cfg.tracking_uri
    where = configured_in("MLFLOW_TRACKING_URI", cfg.registry.tracking_uri is None, connection, environ)
    if urlsplit(uri).scheme in ("http", "https"):
        url = uri.rstrip("/") + MLFLOW_HEALTH_PATH
        probe = lambda: None if http_ok(url, timeout=TIMEOUT_S) else "no answer from /health"  # noqa: E731
        return _Check("MLflow", redact_url(uri), where, probe, "tracking server")
    return _Check("MLflow", redact_url(uri), where, lambda: _sql(uri, "the first candidate creates it"),
                  "tracking and registry store")  # fmt: skip


def _database(cfg: ClmConfig, connection, environ) -> _Check:
    url = cfg.database_url
    where = configured_in("CLM_DATABASE_URL", cfg.database.url is None, connection, environ)
    return _Check(stores.DATABASE, redact_url(url), where, lambda: _sql(url, "`clm init` creates it"), "SQLAlchemy")


def _sql(url: str, creates: str) -> str | None:
    missing = missing_sqlite(url)
    if missing:
        return f"there is no database at {missing} yet; {creates}"
    dialect = make_url(url).get_backend_name()
    args = {"timeout": TIMEOUT_S} if dialect == "sqlite" else {"connect_timeout": max(1, int(TIMEOUT_S))}
    engine = create_engine(url, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return None


def _lake(cfg: ClmConfig, connection, environ) -> _Check:
    uri = cfg.lake_uri
    where = configured_in("CLM_DATA_URI", cfg.paths.lake == "lake", connection, environ)
    scheme = urlsplit(uri).scheme
    if "://" not in uri or scheme == "file":
        folder = Path(urlsplit(uri).path if scheme == "file" else uri)
        probe = lambda: None if folder.is_dir() else "the folder does not exist yet; the first ingestion creates it"  # noqa: E731
        return _Check("Data lake", uri, where, probe, "local folder")
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        shown = f"object store at {redact_url(endpoint)}"
        return _Check("Data lake", redact_url(uri), where, lambda: tcp(endpoint), shown)
    if scheme in ("s3", "s3a"):
        return _Check("Data lake", redact_url(uri), where, lambda: tcp("https://s3.amazonaws.com"), "Amazon S3")
    return _Check("Data lake", redact_url(uri), where, lambda: None, f"{scheme}:// (not checked)")


def _kafka(cfg: ClmConfig) -> _Check:
    # ``ingest.kafka`` is read if the config has it (its own issue); without it Kafka is not configured.
    kafka = getattr(getattr(cfg, "ingest", None), "kafka", None)
    servers = getattr(kafka, "bootstrap_servers", None) if kafka is not None else None
    if not servers:
        return _Check("Kafka", "", "ingest.kafka (absent)", None, "no Kafka source in the config")
    if not kafka.enabled:
        return _Check("Kafka", "", "config ingest.kafka.enabled", None, "Kafka ingestion is off")
    first = str(servers).split(",")[0].strip()
    return _Check("Kafka", redact_url(str(servers)), "config ingest.kafka.bootstrap_servers",
                  lambda: tcp(f"kafka://{first}"), "broker")  # fmt: skip


def _celery(cfg: ClmConfig) -> _Check:
    if cfg.server.executor != "celery":
        return _Check("Celery broker", "", "server.executor", None,
                      "server.executor is 'local': the LocalExecutor runs tasks beside the scheduler")  # fmt: skip
    url = cfg.server.celery.broker_url.get_secret_value()
    return _Check("Celery broker", redact_url(url), "server.celery.broker_url", lambda: broker_problem(url),
                  f"CeleryExecutor, queue {cfg.server.celery.queue}")  # fmt: skip


def _kubernetes(cfg: ClmConfig) -> _Check:
    if cfg.serving.backend != "kubernetes":
        return _Check("Kubernetes", "", "serving.backend", None, f"serving.backend is {cfg.serving.backend!r}")
    namespace = cfg.serving.kubernetes.namespace

    def probe() -> str | None:
        from clm_lib.serving.backends.kubernetes import _api_clients

        _apps, core = _api_clients()
        core.list_namespaced_service(namespace, limit=1, _request_timeout=TIMEOUT_S)
        return None

    return _Check("Kubernetes", f"namespace {namespace}", "serving.backend, serving.kubernetes", probe,
                  "API server (in-cluster config or kubeconfig)")  # fmt: skip


def _gpu(cfg: ClmConfig) -> _Check:
    limits = cfg.serving.kubernetes.resources.get("limits", {})
    if cfg.serving.backend == "kubernetes" and GPU in limits:

        def nodes() -> str | None:
            from clm_lib.serving.backends.kubernetes import _api_clients

            _apps, core = _api_clients()
            found = core.list_node(_request_timeout=TIMEOUT_S).items
            gpus = sum(int((n.status.allocatable or {}).get(GPU, 0)) for n in found)
            return None if gpus else f"no node offers {GPU}"

        return _Check("GPU nodes", f"{GPU}: {limits[GPU]} per pod", "serving.kubernetes.resources", nodes,
                      "cluster nodes with allocatable GPUs")  # fmt: skip
    if cfg.training.device == "cuda":
        return _Check("GPU nodes", "this machine", "training.device", _local_gpu, "local CUDA device")
    return _Check("GPU nodes", "", "training.device, serving.kubernetes.resources", None,
                  "training runs on the CPU or picks a device itself; no GPU is requested")  # fmt: skip


def _local_gpu() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi is not installed"
    done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return None if done.returncode == 0 and "GPU" in done.stdout else "nvidia-smi lists no GPU"


def tcp(url: str) -> str | None:
    """A TCP connect to ``url``'s host and port: None if it accepts, else why not."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 9092 if parts.scheme == "kafka" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def alert_channels(cfg: ClmConfig) -> list[Integration]:
    """The alert channels (``alerts:``) as their deliveries went: the newest attempt sent (reachable), failed
    (unreachable, since the first failure after the last success, with its error), none yet, or disabled."""
    from clm_lib.alerts.delivery import CHANNELS, channel_states

    where = {"email": "alerts.email.smtp_conn_id", "webhook": "alerts.webhook", "apprise": "alerts.apprise.conn_id"}
    states, problem = {}, ""
    try:
        with stores.reading(cfg.database_url) as s:
            states = {c.channel: c for c in channel_states(s, cfg.alerts)}
    except stores.StoreDown as exc:
        problem = f"deliveries unknown: {exc.problem}"
    out = []
    for name in CHANNELS:
        c, since = states.get(name), None
        if name not in cfg.alerts.channels():
            state, detail = "not configured", f"alerts.{name}.enabled is false"
        elif c is None:
            state, detail = "unknown", problem
        elif c.state == "failing":
            state, detail, since = "unreachable", f"delivery failing: {c.last_error}", c.failing_since
        elif c.last_ok_at is not None:
            state, detail = "reachable", f"last alert sent {c.last_ok_at:%Y-%m-%d %H:%M} UTC"
        else:
            state, detail = "untried", "enabled; no alert sent yet"
        out.append(Integration(f"Alerts: {name}", state, detail, "", where[name], None, since))
    return out
