"""RetrainRequestTrigger: wait in the triggerer until a drift check requests a retraining nobody took up yet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from clm_lib.airflow.settings import DEFAULT_CONN_ID, resolve_config


class RetrainRequestTrigger(BaseTrigger):
    """Poll clm's database every ``poll_interval`` seconds for retrain requests newer than ``since``.

    Only the connection id and the config path are serialized, never a database URL: credentials stay in the
    environment and the connection, not in Airflow's trigger table; the triggerer resolves them as the task
    would (:func:`~clm_lib.airflow.settings.resolve_config`). The connection and the database are read in a
    worker thread so the triggerer's event loop, shared with every other trigger, never blocks.
    """

    def __init__(
        self,
        since: str,
        poll_interval: float = 30.0,
        clm_conn_id: str = DEFAULT_CONN_ID,
        config_path: str | None = None,
    ) -> None:
        super().__init__()
        self.since = since
        self.poll_interval = float(poll_interval)
        self.clm_conn_id = clm_conn_id
        self.config_path = config_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "since": self.since,
                "poll_interval": self.poll_interval,
                "clm_conn_id": self.clm_conn_id,
                "config_path": self.config_path,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        since = datetime.fromisoformat(self.since)
        while True:
            try:
                pending = await asyncio.to_thread(self._pending, since)
            except Exception as exc:  # a config or database problem must fail the task, not hang it
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            if pending:
                yield TriggerEvent({"status": "requested", "request": pending[0], "pending": len(pending)})
                return
            await asyncio.sleep(self.poll_interval)

    def _pending(self, since: datetime) -> list[dict[str, Any]]:
        from clm_lib.drift.monitor import pending_requests

        return pending_requests(resolve_config(self.clm_conn_id, self.config_path), since)
