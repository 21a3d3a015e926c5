"""Where every Airflow-facing part of clm gets its configuration: one resolver.

The hook, the operators, the sensor, the triggerer, the FAB screens and the REST API all call
:func:`resolve_config`, so they read and write the same stores. Precedence, lowest first: the config file
(``config_path``, else ``$CLM_CONFIG``, else the shipped default), ``CLM_*`` environment variables, then the
``extra`` of the Airflow connection ``clm_default`` (keys in :data:`CONNECTION_KEYS`), which lets a deployment
point every component at its production stores without editing files.

The connection is read with the Task SDK's ``Connection.get``, which picks its secrets backends by process
(Airflow 3.3, ``airflow.sdk.execution_time.supervisor.ensure_secrets_backend_loaded``): a task asks the
Execution API through its supervisor, a trigger does the same through the triggerer's comms (so the trigger
calls this from a worker thread, never on the event loop), and the api-server, which sets
``_AIRFLOW_PROCESS_CONTEXT=server`` before importing plugins (``airflow/api_fastapi/main.py``), reads
``AIRFLOW_CONN_*`` variables, custom secrets backends and Airflow's own connection table. Nothing is cached
here: every call reads the connection again, so an edited connection takes effect without a restart, and the
configuration revisions again, so a change saved on the Configuration screen applies from the next DAG run on.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from clm_lib.config import ClmConfig

DEFAULT_CONN_ID = "clm_default"

CONNECTION_KEYS = {
    "database_url": "CLM_DATABASE_URL",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "data_uri": "CLM_DATA_URI",
}
"""The connection's ``extra`` keys and the environment variable each one overrides."""


def resolve_config(
    conn_id: str = DEFAULT_CONN_ID, config_path: str | None = None, *, as_of: datetime | None = None
) -> ClmConfig:
    """clm's config as every Airflow component must see it: file, then ``CLM_*`` environment, then the
    connection ``conn_id`` (a missing connection changes nothing); then the run-time-mutable fields of the live
    configuration revision in clm's database (``clm_lib/config_store.py``). Raises
    :class:`~clm_lib.errors.ConfigError` when the config is invalid or the connection exists but cannot be used;
    the message names it.

    ``as_of``: a DAG run's start. Every task of the run then gets the revision live when the run started, not one
    saved while it runs (retries included), and fails rather than fall back to the file when clm's database
    cannot be read. Without it (screens, REST, sensors) the newest revision is used, or the file's values while
    the database is down, so a screen can still say which store is down."""
    # Imported here, not at module level: DAG files import the hook and operators, and the config pulls in the
    # drift package (numpy, pyarrow), which every parse of every DAG file would pay for.
    from clm_lib.config_store import live_config

    return live_config(resolve_file_config(conn_id, config_path), as_of=as_of, strict=as_of is not None)


def resolve_file_config(conn_id: str = DEFAULT_CONN_ID, config_path: str | None = None) -> ClmConfig:
    """The file, ``CLM_*`` environment and connection alone, without configuration revisions: what the revisions of
    ``clm_lib/config_store.py`` apply to (the Configuration screen and its REST routes pass it there)."""
    from clm_lib.config import load_config

    return load_config(config_path, environ=_environ_with(connection_overrides(conn_id)))


def connection_overrides(conn_id: str = DEFAULT_CONN_ID) -> dict[str, str]:
    """The environment variables the connection's ``extra`` sets, e.g. ``{"CLM_DATABASE_URL": "postgresql://..."}``;
    empty when no such connection exists."""
    from clm_lib.errors import ConfigError

    extra = _connection_extra(conn_id)
    if extra is None:
        return {}
    where = f"Airflow connection '{conn_id}'"
    try:
        parsed = json.loads(extra) if extra.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: extra is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{where}: extra must be a JSON object, got {type(parsed).__name__}")
    unknown = sorted(set(parsed) - set(CONNECTION_KEYS))
    if unknown:
        # A misspelt key would silently leave this component on the file's stores: the bug this module exists for.
        raise ConfigError(f"{where}: unknown extra key(s) {', '.join(unknown)}; known: {', '.join(CONNECTION_KEYS)}")
    overrides = {}
    for key, env in CONNECTION_KEYS.items():
        value = parsed.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{where}: extra.{key} must be a string, got {type(value).__name__}")
        overrides[env] = value
    return overrides


def _connection_extra(conn_id: str) -> str | None:
    """The connection's raw ``extra`` ("" when it has none), or None when no backend knows the connection."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from clm_lib.errors import ConfigError

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        # Airflow's lookup hides a backend's parse error as "not defined" (it logs it at debug level). An
        # AIRFLOW_CONN_* variable that is set but unreadable must not fall back to the file's stores unnoticed.
        env = f"AIRFLOW_CONN_{conn_id.upper()}"
        if os.environ.get(env):
            raise ConfigError(
                f"Airflow connection '{conn_id}' in ${env} cannot be parsed: use a URI or the "
                f'JSON form {{"conn_type": "clm", "extra": {{"database_url": ...}}}}'
            ) from None
        return None
    return conn.extra or ""


def _environ_with(overrides: dict[str, str]) -> dict[str, str]:
    from clm_lib.config import ENV_PREFIX, WELL_KNOWN_ENV

    environ = dict(os.environ)
    for env, value in overrides.items():
        environ[env] = value
        # CLM__DATABASE__URL (the generic form) would otherwise win over CLM_DATABASE_URL, and so over the
        # connection: drop it for the fields the connection sets.
        field = list(WELL_KNOWN_ENV[env])
        for key in [k for k in environ if k.startswith(ENV_PREFIX)]:
            if [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p] == field:
                del environ[key]
    return environ
