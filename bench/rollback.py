"""One-click rollback under load, and the router's added latency: the ``local`` serving backend on loopback.

Setup, all through clm's own code: a throwaway ``CLM_HOME`` with clm's database (SQLite) and an MLflow registry
(SQLite file) holding two versions of the tiny demo model (different LoRA adapters) and their evaluations;
``rollout()`` promotes version 1, then version 2 (blue-green, short bake, golden set off), which starts the two
``clm serve`` slots and the router through :class:`~clm_lib.serving.backends.local.LocalBackend`. Version 2 is
champion in one slot, version 1 stays warm in the other. Then:

1. **Router overhead** (no other load): ``GET /v1/models`` sent ``--overhead-requests`` times straight to a slot
   and as many times through the router, alternating (direct/router, then router/direct) so drift in the
   machine's load hits both alike; one keep-alive client each. Overhead = p50 (p95) via router minus direct.
2. **Rollbacks under load** (the measurement the targets apply to): ``--clients`` concurrent clients send
   completions (``max_tokens`` 1) through the router without pause while ``rollback(cfg, backend=...)`` is called
   ``--rollbacks`` times, ``--interval`` seconds apart: the function behind ``clm rollback``, the REST route and
   the ``clm_rollback`` DAG (deploy lock, weight flip to the warm slot, ``champion``/``previous`` alias moves,
   deployment and audit records). Each rollback returns to the previous champion, so they alternate 2→1, 1→2.
   Per call (``rollback_load.analyse``): time from the call until all traffic is answered by the target version
   as the clients see it (``to_100_s``), the call's whole duration (``call_s``), the ``switch_ms`` it reports,
   the drain of requests in flight, and requests answered late by the old version. With ``--database-url``
   the same rollbacks run again with clm's database on PostgreSQL (a throwaway database on that server).
3. **Raw weight switches under load**: the same load, ``backend.set_weights({new: 100, old: 0})`` alone,
   ``--switches`` times: the traffic move inside a rollback, without the lock, the checks and the records.

Failed requests (anything but HTTP 200, or no answer) are counted over every phase. Each load phase stops after
its moves, at ``--max-requests`` requests or at ``--time-cap`` seconds; every process started is stopped.

Targets (issue 5): rollback p95 <= 1 s with 0 failed requests; router overhead p50 <= 2 ms.

    clm bench rollback --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres   # ~2 min
    clm bench rollback --rollbacks 4 --switches 4 --overhead-requests 300 --out /tmp/r.json   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from rollback_load import Move, analyse, section, summary, under_load
from rollback_setup import DEPLOY, promote_both, register_versions, throwaway_postgres

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"rollback_p95_s": 1.0, "failed_requests": 0, "router_overhead_p50_ms": 2.0}


# --- measurements ------------------------------------------------------------------------------------------------
def measure_overhead(direct: str, router: str, n: int) -> dict:
    import httpx

    times: dict[str, list[float]] = {"direct": [], "router": []}
    clients = {"direct": httpx.Client(trust_env=False), "router": httpx.Client(trust_env=False)}
    urls = {"direct": f"{direct}/v1/models", "router": f"{router}/v1/models"}
    for name in times:  # warm up connections and code paths
        for _ in range(50):
            clients[name].get(urls[name]).raise_for_status()
    for i in range(n):
        for name in ("direct", "router") if i % 2 == 0 else ("router", "direct"):
            t = time.perf_counter()
            clients[name].get(urls[name]).raise_for_status()
            times[name].append(time.perf_counter() - t)
    for c in clients.values():
        c.close()
    d, r = (summary(times[k], 1000.0) for k in ("direct", "router"))
    return {
        "requests_each": n,
        "direct_ms": d,
        "router_ms": r,
        "overhead_p50_ms": round(r["p50"] - d["p50"], 3),
        "overhead_p95_ms": round(r["p95"] - d["p95"], 3),
    }


def _load(backend, move, count: int, args):
    body = {"model": backend.cfg.registry.model_name, "prompt": "my thermostat shows error E4", "max_tokens": 1}
    url = f"{backend.router_url}/v1/completions"
    limits = {"clients": args.clients, "max_requests": args.max_requests, "cap_s": args.time_cap}
    return asyncio.run(under_load(url, body, move, moves=count, interval=args.interval, **limits))


def rollbacks_under_load(cfg, backend, args) -> dict:
    """``rollback()`` ``args.rollbacks`` times under load; its timings, and what it left in clm's database."""
    from sqlalchemy import func, select

    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry, Deployment
    from clm_lib.deploy.promotion import PREVIOUS
    from clm_lib.deploy.rollback import rollback
    from clm_lib.registry.mlflow_registry import CHAMPION, alias_version

    def move(i: int) -> Move:
        t0 = time.perf_counter()
        res = rollback(cfg, actor="bench", reason=f"benchmark rollback {i + 1}", backend=backend)
        t1 = time.perf_counter()
        reported = {"switch_ms": round(res.switch_ms, 3), "warm": res.warm, "deployment_id": res.deployment_id}
        return Move(t0, t1, res.from_version, res.to_version, reported)

    def written() -> tuple[int, int]:
        with session_scope(cfg.database_url) as s:
            deployments = select(func.count()).select_from(Deployment).where(Deployment.kind == "rollback")
            return s.scalar(deployments), s.scalar(select(func.count()).select_from(AuditEntry))

    before = written()
    run = _load(backend, move, args.rollbacks, args)
    out = section(analyse(run.requests, run.moves), run)
    after = written()
    out["records"] = {
        "rollback_deployments": after[0] - before[0],
        "audit_entries": after[1] - before[1],
        "champion_after": alias_version(cfg, CHAMPION),
        "previous_after": alias_version(cfg, PREVIOUS),
        "champion_matches_last_target": bool(run.moves) and alias_version(cfg, CHAMPION) == run.moves[-1].new,
        "cold_rollbacks": sum(1 for m in run.moves if not m.reported["warm"]),
    }
    return out


def switches_under_load(backend, args) -> dict:
    """``backend.set_weights`` alone, alternating between the slots, under the same load."""
    from clm_lib.deploy.slots import all_on
    from clm_lib.serving.backends.base import other_slot

    status, weights = backend.status(), backend.weights()
    live = [max(weights, key=weights.get)]

    def move(i: int) -> Move:
        old = live[0]
        new = other_slot(old)
        t0 = time.perf_counter()
        backend.set_weights(all_on(new))
        live[0] = new
        return Move(t0, time.perf_counter(), status[old].version, status[new].version)

    run = _load(backend, move, args.switches, args)
    return section(analyse(run.requests, run.moves), run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm bench rollback", description=__doc__.splitlines()[0])
    parser.add_argument("--rollbacks", type=int, default=20, help="rollback() calls under load, per database")
    parser.add_argument("--switches", type=int, default=20, help="raw weight switches under load")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between moves")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients sending completions")
    parser.add_argument("--max-requests", type=int, default=50_000, help="upper bound on completions per phase")
    parser.add_argument("--time-cap", type=float, default=120.0, help="upper bound on seconds per load phase")
    parser.add_argument("--overhead-requests", type=int, default=2000, help="requests each, direct and via router")
    parser.add_argument(
        "--database-url",
        help="also run the rollbacks with clm's database on this PostgreSQL server (e.g. "
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres): a throwaway database is created there and dropped",
    )
    parser.add_argument("--base-model", help="an already built tiny base model folder (default: build one)")
    parser.add_argument("--home", help="CLM_HOME to use (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rollback.json"))
    args = parser.parse_args(argv)
    if min(args.rollbacks, args.switches, args.clients) < 1 or args.overhead_requests < 10:
        parser.error("need at least 1 rollback, 1 switch, 1 client and 10 overhead requests")
    if args.interval <= 0 or args.time_cap <= 0:
        parser.error("--interval and --time-cap must be positive")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL server URL (postgresql://...); SQLite is always measured")

    from clm_lib.config import load_config
    from clm_lib.services.processes import port_in_use
    from clm_lib.serving.backends.local import LocalBackend

    logging.getLogger("clm_lib.deploy").setLevel(logging.ERROR)  # one warning per rollback otherwise
    with ExitStack() as stack:
        home = Path(args.home or stack.enter_context(tempfile.TemporaryDirectory(prefix="clm-bench-rollback-")))
        ports = _free_ports(3)
        environ = {
            "CLM_HOME": str(home),
            "CLM__SERVING__ROUTER_PORT": str(ports[0]),
            "CLM__SERVING__BLUE_PORT": str(ports[1]),
            "CLM__SERVING__GREEN_PORT": str(ports[2]),
            "CLM__SERVING__DEVICE": "cpu",
            **{f"CLM__DEPLOY__{k}": v for k, v in DEPLOY.items()},
            **({"CLM__MODEL__BASE_PATH": str(Path(args.base_model).resolve())} if args.base_model else {}),
        }
        cfg = load_config(REPO / "include" / "tiny.yaml", environ=environ)
        if any(port_in_use("127.0.0.1", p) for p in ports):
            raise SystemExit("clm: error: a free port was taken before the benchmark started; run it again")
        t = time.perf_counter()
        versions = register_versions(cfg)
        print(f"registered versions {versions} in {time.perf_counter() - t:.1f} s", flush=True)
        backend = LocalBackend(cfg)
        stack.callback(backend.shutdown)  # the slots and the router, whatever happens
        t = time.perf_counter()
        promote_both(cfg, backend, versions)
        print(f"versions {versions} promoted in turn (slots and router up) in {time.perf_counter() - t:.1f} s",
              flush=True)  # fmt: skip
        status = backend.status()
        overhead = measure_overhead(status["blue"].url, backend.router_url, args.overhead_requests)
        print(f"router overhead: p50 {overhead['overhead_p50_ms']} ms, p95 {overhead['overhead_p95_ms']} ms "
              f"(direct p50 {overhead['direct_ms']['p50']} ms, via router {overhead['router_ms']['p50']} ms)",
              flush=True)  # fmt: skip
        load_since = time.time()
        rollbacks = {"sqlite": rollbacks_under_load(cfg, backend, args)}
        _report("rollback() on SQLite", rollbacks["sqlite"])
        if args.database_url:
            pg = cfg.model_copy(deep=True)
            pg.database.url = stack.enter_context(throwaway_postgres(args.database_url))
            rollbacks["postgresql"] = rollbacks_under_load(pg, backend, args)
            _report("rollback() on PostgreSQL", rollbacks["postgresql"])
        switches = switches_under_load(backend, args)
        _report("set_weights alone", switches)
        # What a bake window would have read over the load phases: the router's own per-slot numbers.
        router_stats = {s: backend.live_metrics(s, load_since).as_dict() for s in ("blue", "green")}

    phases = [*rollbacks.values(), switches]
    failed = sum(p["load"]["failed_requests"] for p in phases)
    p95s = {db: r["to_100_s"].get("p95", float("inf")) for db, r in rollbacks.items()}
    result = {
        "command": " ".join(["clm bench rollback", *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "home", "base_model", "database_url")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "model": "include/tiny.yaml demo model, two registered versions with different LoRA adapters",
        "setup": f"versions {versions} promoted in turn with rollout() ({DEPLOY['STRATEGY']}, "
        f"{DEPLOY['BAKE_SECONDS']} s bake, golden set off); MLflow registry on SQLite under the temporary home",
        "failed_requests": failed,
        "requests": sum(p["load"]["requests"] for p in phases),
        "rollback": rollbacks,
        "weight_switch": switches,
        "router_overhead": overhead,
        "router_live_metrics": router_stats,
        "targets": TARGETS,
    }
    result["met"] = {
        "rollback_p95_s": all(p <= TARGETS["rollback_p95_s"] for p in p95s.values())
        and not any(r["never_reached_100"] or r["stopped_early"] for r in rollbacks.values()),
        "failed_requests": failed <= TARGETS["failed_requests"],
        "router_overhead_p50_ms": overhead["overhead_p50_ms"] <= TARGETS["router_overhead_p50_ms"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"failed requests {failed} of {result['requests']}; targets met: {result['met']}; results in {args.out}")
    return 0 if all(result["met"].values()) else 1


def _report(what: str, s: dict) -> None:
    to, call = s["to_100_s"], s["call_s"]
    extra = f", switch_ms p95 {s['switch_ms']['p95']}" if "switch_ms" in s else ""
    print(f"{what}: {s['moves']} under load ({s['load']['requests']} requests, {s['load']['requests_per_s']}/s, "
          f"{s['load']['failed_requests']} failed): to 100 % p50 {to.get('p50', 0) * 1000:.1f} ms, "
          f"p95 {to.get('p95', 0) * 1000:.1f} ms; call p95 {call.get('p95', 0) * 1000:.1f} ms{extra}; "
          f"late {s['late_requests']}, never at 100 % {s['never_reached_100']}"
          + (f"; stopped early: {s['stopped_early']}" if s["stopped_early"] else ""), flush=True)  # fmt: skip


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


if __name__ == "__main__":
    sys.exit(main())
