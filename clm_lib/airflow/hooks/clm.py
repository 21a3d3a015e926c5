"""ClmHook: where an Airflow task gets clm's configuration from.

The config file and ``CLM_*`` environment variables are the source of truth; an optional
Airflow connection (``clm_default``) can point a deployment at its production stores without
editing files: ``extra`` keys ``database_url``, ``tracking_uri`` and ``data_uri`` override them.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig


class ClmHook(BaseHook):
    conn_name_attr = "clm_conn_id"
    default_conn_name = "clm_default"
    conn_type = "clm"
    hook_name = "clm"

    def __init__(self, clm_conn_id: str = default_conn_name, config_path: str | None = None) -> None:
        super().__init__()
        self.clm_conn_id = clm_conn_id
        self.config_path = config_path

    @cached_property
    def config(self) -> ClmConfig:
        # Imported here, not at module level: DAG files import this hook, and the config pulls in the drift
        # package (numpy, pyarrow), which every parse of every DAG file would pay for.
        from clm_lib.config import load_config

        environ = dict(os.environ)
        extra = self._connection_extra()
        for key, env in (
            ("database_url", "CLM_DATABASE_URL"),
            ("tracking_uri", "MLFLOW_TRACKING_URI"),
            ("data_uri", "CLM_DATA_URI"),
        ):
            if extra.get(key):
                environ[env] = str(extra[key])
        return load_config(self.config_path, environ=environ)

    def _connection_extra(self) -> dict:
        try:
            return self.get_connection(self.clm_conn_id).extra_dejson
        except Exception:  # no such connection: the file and environment decide
            return {}

    def get_conn(self) -> ClmConfig:
        return self.config
