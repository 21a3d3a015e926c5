"""ClmHook: an Airflow task's handle on clm's configuration, in the provider pattern.

The config comes from :func:`clm_lib.airflow.settings.resolve_config`, the one resolver every Airflow-facing
part of clm uses: the file and ``CLM_*`` environment variables, overridden by the ``extra`` of the connection
(``clm_default``; keys ``database_url``, ``tracking_uri``, ``data_uri``).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from clm_lib.airflow.settings import DEFAULT_CONN_ID, resolve_config

if TYPE_CHECKING:
    from datetime import datetime

    from clm_lib.config import ClmConfig


class ClmHook(BaseHook):
    conn_name_attr = "clm_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "clm"
    hook_name = "clm"

    def __init__(
        self, clm_conn_id: str = default_conn_name, config_path: str | None = None, as_of: datetime | None = None
    ) -> None:
        super().__init__()
        self.clm_conn_id = clm_conn_id
        self.config_path = config_path
        self.as_of = as_of
        """A DAG run's start: the configuration revision live then is used (``resolve_config``)."""

    @cached_property
    def config(self) -> ClmConfig:
        return resolve_config(self.clm_conn_id, self.config_path, as_of=self.as_of)

    def get_conn(self) -> ClmConfig:
        return self.config
