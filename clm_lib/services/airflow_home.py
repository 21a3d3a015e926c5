"""clm's Airflow home: a rendered ``airflow.cfg``, secrets generated once, a migrated DB and an admin login.

``$AIRFLOW_HOME`` is ``$CLM_HOME/airflow``. ``airflow.cfg`` is derived from ``airflow.cfg.template`` at the repo root
and rewritten on every ``clm init`` / ``clm up``; what must survive a rewrite (the API secret, the JWT secret, the
Fernet key, the Airflow DB URL chosen at init) lives in ``secrets.json`` next to it. Both files are 0600.
Airflow is driven through its CLI (``python -m airflow``), never imported.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from clm_lib.config import DEFAULT_CONFIG, REPO_ROOT, ClmConfig
from clm_lib.errors import ClmError

TEMPLATE = REPO_ROOT / "airflow.cfg.template"
ADMIN_USERNAME = "admin"
ROLE_USERS = {"operator": "Op", "viewer": "Viewer"}
"""Logins besides the admin, with FAB roles: ``operator`` may trigger DAGs (promote, roll back) but not administer
users; ``viewer`` only reads. Each gets a generated password in ``$CLM_HOME/<name>-credentials``."""
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class AdminCredentials:
    """The Airflow UI / API login ``clm init`` created (or found)."""

    username: str
    password: str
    created: bool
    """False when an existing login was kept."""


def airflow_home(cfg: ClmConfig) -> Path:
    """``$AIRFLOW_HOME`` for this clm home."""
    return cfg.home / "airflow"


def credentials_path(cfg: ClmConfig, username: str = ADMIN_USERNAME) -> Path:
    """File holding a login created by ``clm init`` (0600); the admin's by default."""
    return cfg.home / f"{username}-credentials"


def config_path(cfg: ClmConfig) -> Path:
    """The rendered ``airflow.cfg``."""
    return airflow_home(cfg) / "airflow.cfg"


def _secrets_path(cfg: ClmConfig) -> Path:
    return airflow_home(cfg) / "secrets.json"


def default_sql_alchemy_conn(cfg: ClmConfig) -> str:
    """Airflow's metadata DB when nothing else is chosen: SQLite under the Airflow home."""
    return f"sqlite:///{airflow_home(cfg) / 'airflow.db'}"


def render_template(text: str, values: dict[str, object]) -> str:
    """Fill ``${name}`` placeholders. Values are escaped for Airflow's ``%``-interpolating config parser."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - values.keys())
    if missing:
        raise ClmError(f"airflow.cfg template uses unknown placeholder(s): {', '.join(missing)}")

    def fill(match: re.Match[str]) -> str:
        value = str(values[match.group(1)])
        if "\n" in value or "\r" in value:
            raise ClmError(f"airflow.cfg value for {match.group(1)} must be a single line")
        # A literal % (a URL-encoded DB password, say) would otherwise be read as an interpolation.
        return value.replace("%", "%%")

    return _PLACEHOLDER.sub(fill, text)


def _write_private(path: Path, text: str) -> None:
    # Create with 0600 from the start so the secrets are never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _load_state(cfg: ClmConfig) -> dict[str, str]:
    path = _secrets_path(cfg)
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClmError(f"cannot read {path}: {exc} (delete it to generate new Airflow secrets)") from None
    if not isinstance(state, dict):
        raise ClmError(f"{path} must hold a JSON object (delete it to generate new Airflow secrets)")
    return state


def chosen_sql_alchemy_conn(cfg: ClmConfig) -> str:
    """The Airflow metadata DB URL the last :func:`render_config` chose (password included: connect with it only)."""
    return _load_state(cfg).get("sql_alchemy_conn") or default_sql_alchemy_conn(cfg)


def render_config(
    cfg: ClmConfig,
    *,
    airflow_port: int | None = None,
    sql_alchemy_conn: str | None = None,
    template: Path = TEMPLATE,
) -> Path:
    """Write ``$AIRFLOW_HOME/airflow.cfg`` from the template and return its path.

    The Airflow DB URL is, in order: ``sql_alchemy_conn``, ``$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``,
    ``server.airflow_database_url``, the URL chosen by an earlier ``clm init``, SQLite under the Airflow home.
    Secrets are generated on the first call only.
    """
    home = airflow_home(cfg)
    home.mkdir(parents=True, exist_ok=True)
    state = _load_state(cfg)
    state.setdefault("secret_key", secrets.token_urlsafe(32))
    # Airflow signs with HS512, for which RFC 7518 wants a key of at least 64 bytes.
    state.setdefault("jwt_secret", secrets.token_urlsafe(64))
    # A Fernet key is 32 random bytes, urlsafe-base64 encoded.
    state.setdefault("fernet_key", base64.urlsafe_b64encode(os.urandom(32)).decode())
    configured = cfg.server.airflow_database_url
    state["sql_alchemy_conn"] = (
        sql_alchemy_conn
        or os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        or (configured.get_secret_value() if configured else None)
        or state.get("sql_alchemy_conn")
        or default_sql_alchemy_conn(cfg)
    )
    if cfg.server.executor == "celery" and state["sql_alchemy_conn"].startswith("sqlite"):
        raise ClmError("server.executor is celery, which needs Airflow's metadata database on PostgreSQL "
                       "(server.airflow_database_url); Airflow runs only the local executor on SQLite")
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClmError(f"cannot read Airflow config template {template}: {exc.strerror or exc}") from None
    values = {
        "dags_folder": REPO_ROOT / "dags",
        "plugins_folder": REPO_ROOT / "plugins",
        "host": cfg.server.host,
        "airflow_port": airflow_port or cfg.server.airflow_port,
        "parallelism": cfg.server.parallelism,
        "executor": {"local": "LocalExecutor", "celery": "CeleryExecutor"}[cfg.server.executor],
        "celery_queue": cfg.server.celery.queue,
        "celery_broker_url": cfg.server.celery.broker_url.get_secret_value(),
        "celery_concurrency": cfg.server.celery.concurrency,
        "sql_alchemy_conn": state["sql_alchemy_conn"],
        "secret_key": state["secret_key"],
        "jwt_secret": state["jwt_secret"],
        "fernet_key": state["fernet_key"],
        "task_log_folder": cfg.logs_dir / "airflow",
    }
    rendered = render_template(text, values)
    _write_private(_secrets_path(cfg), json.dumps(state, indent=2) + "\n")
    _write_private(config_path(cfg), rendered)
    return config_path(cfg)


def airflow_env(cfg: ClmConfig, *, mlflow_tracking_uri: str | None = None) -> dict[str, str]:
    """Environment for every Airflow command and process of this home (and the tasks they run).

    Starts from ``os.environ`` so ``CLM__*`` and ``AIRFLOW__*`` overrides reach the tasks too.
    """
    env = dict(os.environ)
    clm_config = Path(env.get("CLM_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()
    python_path = [str(REPO_ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env.update(
        AIRFLOW_HOME=str(airflow_home(cfg)),
        AIRFLOW_CONFIG=str(config_path(cfg)),
        CLM_HOME=str(cfg.home),
        CLM_CONFIG=str(clm_config),
        AIRFLOW__API__HOST=cfg.server.host,
        # DAGs import clm_lib from the checkout even when it is not pip-installed.
        PYTHONPATH=os.pathsep.join(dict.fromkeys(python_path)),
        DS_ACCELERATOR="cpu",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    env.update(kafka_env(cfg))
    return env


def kafka_env(cfg: ClmConfig) -> dict[str, str]:
    """What the Airflow processes need for Kafka ingestion (``clm_lib/airflow/kafka.py``): the watched topic, and
    the watcher's connection, whose consumer group is its own (``<group_id>.watcher``), never the task's. Empty
    when ``ingest.kafka.enabled`` is false; an ``AIRFLOW_CONN_CLM_KAFKA_WATCHER`` already set is kept (a
    production cluster's credentials belong there)."""
    kafka = cfg.ingest.kafka
    if not kafka.enabled:
        return {}
    extra = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": f"{kafka.group_id}.watcher",
        # From the beginning, so a message sent before the watcher first joined still wakes the DAG (with "latest"
        # the demo's first drop, sent right after `clm up`, could wait for the next message). The cost: a first
        # start on a topic with a backlog signals once per message; the runs coalesce (max_active_runs=1).
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,  # STACK.md: the default makes a new group wait ~25 s on Tansu
    }
    env = {"CLM_KAFKA_WATCH": f"kafka://{kafka.bootstrap_servers}/{kafka.topic}"}
    if not os.environ.get("AIRFLOW_CONN_CLM_KAFKA_WATCHER"):
        env["AIRFLOW_CONN_CLM_KAFKA_WATCHER"] = json.dumps({"conn_type": "kafka", "extra": extra})
    return env


def run_airflow(args: list[str], env: dict[str, str], log: Path, *, stdin: str = "", timeout: float = 600) -> str:
    """Run ``airflow <args>``, append its output to ``log`` and return it. Failure → :class:`ClmError`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    what = "airflow " + " ".join(args[:2])
    try:
        # A new session has no controlling terminal, so Airflow's getpass() prompts read the piped stdin:
        # passwords never appear on a command line (visible in `ps`).
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            cwd=env["CLM_HOME"],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClmError(f"{what} did not finish within {timeout:.0f} s") from None
    output = proc.stdout + proc.stderr
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {what}\n{output}\n")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise ClmError(f"{what} failed (exit {proc.returncode}); full output in {log}:\n{tail}")
    return output


def migrate_airflow_db(cfg: ClmConfig, env: dict[str, str], log: Path) -> None:
    """``airflow db migrate`` (idempotent; also creates the FAB auth manager's tables)."""
    run_airflow(["db", "migrate"], env, log)


def read_credentials(cfg: ClmConfig, username: str = ADMIN_USERNAME) -> tuple[str, str] | None:
    """(username, password) from ``$CLM_HOME/<username>-credentials``, or None if the file does not exist."""
    path = credentials_path(cfg, username)
    if not path.exists():
        return None
    fields = dict(
        line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    if not fields.get("username") or not fields.get("password"):
        raise ClmError(f"{path} must hold username=... and password=... lines (delete it to create a new login)")
    return fields["username"], fields["password"]


def ensure_admin_user(cfg: ClmConfig, env: dict[str, str], log: Path) -> AdminCredentials:
    """Create the FAB ``Admin`` user with a generated password kept in ``admin-credentials``; keep an existing one."""
    return ensure_user(cfg, env, log, ADMIN_USERNAME, "Admin")


def ensure_role_users(cfg: ClmConfig, env: dict[str, str], log: Path) -> list[AdminCredentials]:
    """Create the :data:`ROLE_USERS` logins (operator, viewer) as :func:`ensure_user` does."""
    return [ensure_user(cfg, env, log, name, role) for name, role in ROLE_USERS.items()]


PLUGIN_READERS = ("Viewer", "User", "Op")
"""FAB roles that may read clm's screens; Admin has every permission already."""


def grant_plugin_view(env: dict[str, str], log: Path) -> str:
    """Let every role that may read clm's screens find them in the navigation.

    Airflow's React UI builds plugin nav entries from ``GET /api/v2/plugins``, which the FAB auth manager maps to
    ``can_read`` on ``Plugins``, a permission only Admin has by default: without it a Viewer's navigation has no clm
    entry and ``/plugin/clm-*`` renders a 404, though the pages themselves admit view access (seen on Airflow 3.3.2).
    FAB's role sync only adds permissions, so the grant survives restarts; re-running it is a no-op.
    """
    run_airflow(["roles", "add-perms", *PLUGIN_READERS, "-r", "Plugins", "-a", "can_read"], env, log)
    return ", ".join(PLUGIN_READERS)


def ensure_user(cfg: ClmConfig, env: dict[str, str], log: Path, name: str, role: str) -> AdminCredentials:
    """Create the FAB user ``name`` with ``role`` and a generated password kept in ``<name>-credentials``; keep an
    existing one.

    If the user exists but the credentials file was lost, the user's password is reset to a new one, so the file
    always holds a working login.
    """
    known = read_credentials(cfg, name)
    username, password = known or (name, secrets.token_urlsafe(18))
    create = ["users", "create", "--username", username, "--role", role,
              "--firstname", "clm", "--lastname", role.lower(), "--email", f"{username}@localhost"]
    output = run_airflow(create, env, log, stdin=f"{password}\n{password}\n")
    created = "already exists" not in output
    if not created and known is None:
        run_airflow(["users", "reset-password", "--username", username], env, log, stdin=f"{password}\n{password}\n")
    if known is None:
        _write_private(
            credentials_path(cfg, name),
            f"# Airflow UI / API login ({role} role) created by `clm init`\nusername={username}\npassword={password}\n",
        )
    return AdminCredentials(username=username, password=password, created=created)
