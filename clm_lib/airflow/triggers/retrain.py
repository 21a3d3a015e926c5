"""RetrainRequestTrigger: wait in the triggerer until a drift check requests a retraining nobody took up yet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class RetrainRequestTrigger(BaseTrigger):
    """Poll clm's database every ``poll_interval`` seconds for retrain requests newer than ``since``.

    Only the config path is serialized, never a database URL: credentials stay in the environment and the
    ``clm_default`` connection, not in Airflow's trigger table. The database is read in a worker thread so the
    triggerer's event loop, shared with every other trigger, never blocks.
    """

    def __init__(self, since: str, poll_interval: float = 30.0, config_path: str | None = None) -> None:
        super().__init__()
        self.since = since
        self.poll_interval = float(poll_interval)
        self.config_path = config_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"since": self.since, "poll_interval": self.poll_interval, "config_path": self.config_path},
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
        from clm_lib.config import load_config
        from clm_lib.drift.monitor import pending_requests

        return pending_requests(load_config(self.config_path), since)
