"""The load side of the rollback benchmark: steady completions through the router while a traffic move (a
``rollback()`` call, a raw weight switch) runs every so often, and what the clients saw of each move.

Every response names the version that answered (``x-clm-version``), so the clients' log says when traffic moved,
independently of what the moving code reports about itself.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    sent: float
    received: float
    status: int
    """HTTP status; 0: no answer (connection error, timeout)."""
    version: str | None
    """The version that answered (``x-clm-version``)."""


@dataclass(frozen=True)
class Move:
    """One traffic move, timed around the call that made it (``time.perf_counter`` seconds)."""

    started: float
    returned: float
    old: str
    new: str
    reported: dict[str, Any] = field(default_factory=dict)
    """What the call said about itself (a rollback: its ``switch_ms``, whether the slot was warm, ...)."""


@dataclass(frozen=True)
class LoadRun:
    requests: list[Request]
    moves: list[Move]
    seconds: float
    stopped_early: str | None
    """Why fewer moves than asked for were made (the time cap or the request budget), else None."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float], scale: float = 1.0, digits: int = 3) -> dict:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 0.5) * scale, digits),
        "p95": round(percentile(values, 0.95) * scale, digits),
        "max": round(max(values) * scale, digits),
        "mean": round(statistics.fmean(values) * scale, digits),
    }


def analyse(requests: list[Request], moves: list[Move]) -> list[dict]:
    """Per move, from the requests sent after its start and answered before the next move's start (one still
    in flight then may have been routed by either move, so it is left out):

    - ``to_100_s``: from the call's start until every request is answered by the new version: the send time of
      the first request the new version answered after the last one the old version answered (an upper bound:
      the switch lies between those two sends). None: the window never got there.
    - ``call_s``: the call's whole duration (for a rollback, the records and alias moves after the switch too);
    - ``drain_s``: until the last request the old version answered came back (in flight at the switch);
    - ``late``: requests sent after the call returned and still answered by the old version (should be 0).
    """
    rows = []
    for i, mv in enumerate(moves):
        end = moves[i + 1].started if i + 1 < len(moves) else float("inf")
        window = [r for r in requests if mv.started <= r.sent and r.received < end]
        old = [r for r in window if r.version == mv.old]
        in_flight = [r for r in requests if r.sent < mv.started < r.received and r.version == mv.old]
        last_old = max((r.sent for r in old), default=mv.started)
        first_new = min((r.sent for r in window if r.version == mv.new and r.sent >= last_old), default=None)
        drain = max([mv.started, *(r.received for r in [*old, *in_flight])]) - mv.started
        rows.append(
            {
                "from": mv.old,
                "to": mv.new,
                "to_100_s": None if first_new is None else round(first_new - mv.started, 6),
                "call_s": round(mv.returned - mv.started, 6),
                "drain_s": round(drain, 6),
                "late": sum(1 for r in old if r.sent > mv.returned),
                "requests": len(window),
                **mv.reported,
            }
        )
    return rows


def section(rows: list[dict], run: LoadRun) -> dict:
    """The summary of one phase of moves under load, with every move."""
    reached = [r["to_100_s"] for r in rows if r["to_100_s"] is not None]
    out = {
        "moves": len(rows),
        "stopped_early": run.stopped_early,
        "to_100_s": summary(reached, 1.0, 4),
        "never_reached_100": len(rows) - len(reached),
        "call_s": summary([r["call_s"] for r in rows], 1.0, 4),
        "drain_s": summary([r["drain_s"] for r in rows], 1.0, 4),
        "late_requests": sum(r["late"] for r in rows),
        "load": load_summary(run),
    }
    if rows and "switch_ms" in rows[0]:
        out["switch_ms"] = summary([r["switch_ms"] for r in rows if r["switch_ms"] is not None], 1.0, 2)
    out["per_move"] = rows
    return out


def load_summary(run: LoadRun) -> dict:
    return {
        "requests": len(run.requests),
        "failed_requests": sum(1 for r in run.requests if r.status != 200),
        "seconds": round(run.seconds, 2),
        "requests_per_s": round(len(run.requests) / run.seconds, 1) if run.seconds else 0.0,
        "latency_ms": summary([r.received - r.sent for r in run.requests], 1000.0, 2),
    }


async def under_load(
    url: str,
    body: dict,
    move: Callable[[int], Move],
    *,
    moves: int,
    interval: float,
    clients: int,
    max_requests: int,
    cap_s: float,
) -> LoadRun:
    """``clients`` keep-alive clients POST ``body`` to ``url`` without pause; every ``interval`` seconds
    ``move(i)`` runs in a worker thread, ``moves`` times. Stops at ``cap_s`` seconds or ``max_requests``
    requests, whichever comes first; the clients always stop and are awaited, also when a move raises."""
    import aiohttp

    requests: list[Request] = []
    stop = asyncio.Event()
    budget = [max_requests]

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set() and budget[0] > 0:
            budget[0] -= 1
            sent = time.perf_counter()
            try:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    requests.append(Request(sent, time.perf_counter(), resp.status, resp.headers.get("x-clm-version")))
            except (TimeoutError, aiohttp.ClientError):
                requests.append(Request(sent, time.perf_counter(), 0, None))

    done: list[Move] = []
    stopped_early = None
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(clients)]
        t_start = time.perf_counter()
        try:
            await asyncio.sleep(interval)
            for i in range(moves):
                if time.perf_counter() - t_start > cap_s:
                    stopped_early = f"time cap of {cap_s:g} s reached after {i} moves"
                    break
                if budget[0] <= 0:
                    stopped_early = f"request budget of {max_requests} spent after {i} moves"
                    break
                done.append(await asyncio.to_thread(move, i))
                await asyncio.sleep(interval)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return LoadRun(requests, done, time.perf_counter() - t_start, stopped_early)
