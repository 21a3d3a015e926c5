"""One-click rollback under load, and the router's added latency: the ``local`` serving backend on loopback.

Setup, all through clm's own code: a throwaway ``CLM_HOME`` with clm's database (SQLite) and an MLflow registry
holding two versions of the tiny demo model (different LoRA adapters) and their evaluations; ``rollout()``
promotes version 1, then version 2 (blue-green, short bake, golden set off), which starts the two ``clm serve``
slots and the router through :class:`~clm_lib.serving.backends.local.LocalBackend`. Version 2 is champion in one
slot, version 1 stays warm in the other.

The registry (``--registry``): ``server`` (the default, what production uses) is a real ``mlflow server`` started
as ``clm up`` starts it (one worker, no job consumers) on a free 127.0.0.1 port, over a SQLite store in the
temporary home, stopped at the end (and by itself after ``--server-lifetime`` seconds whatever happens);
``file`` is that SQLite store opened directly by the MLflow client; ``both`` runs the rollbacks with each, over
the same store. Then:

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
   With the server registry, every MLflow HTTP request the call makes is timed, and counted before and after
   the switch (``mlflow_http*``).
2b. **``clm rollback`` under load** (``--cli-rollbacks``): the command itself in a new process, as an operator
   runs it, with the server registry if measured: spawn → 100 % of traffic, the ``switch_ms`` it prints (from the
   ``rollback()`` call), the whole process, and its import time (``-X importtime``: all of it, and MLflow's).
   ``start_s`` = ``to_100_s`` minus ``switch_ms``: what the process spends before ``rollback()`` is called.
3. **Raw weight switches under load**: the same load, ``backend.set_weights({new: 100, old: 0})`` alone,
   ``--switches`` times: the traffic move inside a rollback, without the lock, the checks and the records.

Failed requests (anything but HTTP 200, or no answer) are counted over every phase. Each load phase stops after
its moves, at ``--max-requests`` requests or at ``--time-cap`` seconds; every process started is stopped.

Targets (issues 5 and 10): ``rollback()`` call → 100 % of traffic p95 <= 100 ms with every registry measured,
0 failed requests; router overhead p50 <= 2 ms. The CLI figures are reported, not judged (process start).

    clm bench rollback --registry both --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
    clm bench rollback --rollbacks 4 --switches 4 --cli-rollbacks 1 --overhead-requests 300 --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from rollback_load import Move, analyse, section, summary, under_load
from rollback_setup import DEPLOY, free_ports, mlflow_server, promote_both, register_versions, throwaway_postgres

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"rollback_p95_s": 0.1, "failed_requests": 0, "router_overhead_p50_ms": 2.0}
TINY = REPO / "include" / "tiny.yaml"
REGISTRIES = {"server": ["server"], "file": ["file"], "both": ["file", "server"]}


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


class CallLog:
    """Times of the MLflow HTTP requests (``requests.Session.request``, which MLflow's REST client sends through)
    and of the backend's ``set_weights`` calls, while it is active."""

    def __init__(self) -> None:
        self.http: list[tuple[float, float, str]] = []
        self.switches: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    @contextmanager
    def active(self, backend):
        import requests

        original = requests.Session.request
        set_weights = backend.set_weights

        def request(session, method, url, *a, **kw):
            t = time.perf_counter()
            try:
                return original(session, method, url, *a, **kw)
            finally:
                with self._lock:
                    self.http.append((t, time.perf_counter(), f"{method} {url.split('/api/', 1)[-1].split('?')[0]}"))

        def timed_set_weights(*a, **kw):
            t = time.perf_counter()
            try:
                return set_weights(*a, **kw)
            finally:
                with self._lock:
                    self.switches.append((t, time.perf_counter()))

        requests.Session.request = request
        backend.set_weights = timed_set_weights
        try:
            yield self
        finally:
            requests.Session.request = original
            del backend.set_weights  # the class's method again

    def of_call(self, t0: float, t1: float) -> dict:
        """The call's MLflow requests, before and after its (last) traffic switch."""
        with self._lock:
            http = [h for h in self.http if t0 <= h[0] <= t1]
            switch = [s for s in self.switches if t0 <= s[0] <= t1]
        at = switch[-1][0] if switch else t1
        before = [h for h in http if h[1] <= at]
        return {
            "set_weights_at_ms": round(1000 * (at - t0), 3) if switch else None,
            "mlflow_http_before_switch": len(before),
            "mlflow_http_ms_before_switch": round(1000 * sum(e - s for s, e, _ in before), 3),
            "mlflow_http": len(http),
            "mlflow_http_ms": round(1000 * sum(e - s for s, e, _ in http), 3),
            "mlflow_requests": [f"{w} {1000 * (e - s):.1f} ms{' *' if e <= at else ''}" for s, e, w in http],
        }


def rollbacks_under_load(cfg, backend, args) -> dict:
    """``rollback()`` ``args.rollbacks`` times under load; its timings (with the MLflow requests it made, against a
    server), and what it left in clm's database."""
    from sqlalchemy import func, select

    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry, Deployment
    from clm_lib.deploy.rollback import rollback
    from clm_lib.registry.aliases import CHAMPION, PREVIOUS
    from clm_lib.registry.mlflow_registry import alias_version, aliases

    calls = CallLog()

    def move(i: int) -> Move:
        _, target = live_and_warm(backend)
        t0 = time.perf_counter()
        res = rollback(cfg, target, actor="bench", reason=f"benchmark rollback {i + 1}", backend=backend)
        t1 = time.perf_counter()
        reported = {"switch_ms": round(res.switch_ms, 3), "warm": res.warm, "deployment_id": res.deployment_id,
                    **calls.of_call(t0, t1)}  # fmt: skip
        return Move(t0, t1, res.from_version, res.to_version, reported)

    def written() -> tuple[int, int]:
        with session_scope(cfg.database_url) as s:
            deployments = select(func.count()).select_from(Deployment).where(Deployment.kind == "rollback")
            return s.scalar(deployments), s.scalar(select(func.count()).select_from(AuditEntry))

    # A warm registry client, as in the API server that answers the UI's button (the first call of a process opens
    # the store: ~1 s for a SQLite file store, which checks its schema); a new process is measured by the CLI phase.
    aliases(cfg)
    before = written()
    with calls.active(backend):
        run = _load(backend, move, args.rollbacks, args)
    out = section(analyse(run.requests, run.moves), run)
    rows = out["per_move"]
    out["mlflow_http"] = {
        "before_switch_per_call": summary([r["mlflow_http_before_switch"] for r in rows], 1.0, 1),
        "before_switch_ms": summary([r["mlflow_http_ms_before_switch"] for r in rows], 1.0, 2),
        "per_call": summary([r["mlflow_http"] for r in rows], 1.0, 1),
        "per_call_ms": summary([r["mlflow_http_ms"] for r in rows], 1.0, 2),
        "set_weights_at_ms": summary([r["set_weights_at_ms"] for r in rows if r["set_weights_at_ms"] is not None]),
    }
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


def live_and_warm(backend) -> tuple[str, str]:
    """The version on all traffic, and the one warm in the other slot: each rollback names the latter (a rollback
    marks the version it leaves, so the default target of the next one would not be the undo)."""
    from clm_lib.deploy.slots import serving_slot
    from clm_lib.serving.backends.base import other_slot

    status, weights = backend.status(), backend.weights()
    live = serving_slot(status, weights)
    return status[live].version, status[other_slot(live)].version


_SWITCH_MS = re.compile(r"([0-9.]+) ms\)")  # "champion: 2 -> 1 on blue (weight flip to the warm slot, 41 ms); ..."


def _import_times(stderr: str) -> dict:
    """Top-level imports' cumulative time from ``-X importtime`` (an import made inside a function at run time is
    top-level too): all of them, and MLflow's."""
    total = mlflow = 0.0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if name.startswith(" ") and not name.startswith("  "):
            total += int(cumulative) / 1e6
            if name.strip().split(".")[0] == "mlflow":  # `import mlflow.exceptions` times `mlflow` inside it
                mlflow += int(cumulative) / 1e6
    return {"imports_s": round(total, 4), "mlflow_import_s": round(mlflow, 4)}


def cli_rollbacks_under_load(backend, env: dict, args) -> dict:
    """``clm rollback`` in a new process (``python -X importtime -m clm_lib.cli``), ``args.cli_rollbacks`` times
    under the same load."""
    cmd = [sys.executable, "-X", "importtime", "-m", "clm_lib.cli", "rollback"]

    def move(i: int) -> Move:
        old, new = live_and_warm(backend)
        t0 = time.perf_counter()
        argv = [*cmd, "--to", new, "--reason", f"benchmark CLI rollback {i + 1}"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        t1 = time.perf_counter()
        out = proc.stdout.strip()
        if proc.returncode != 0:
            raise RuntimeError(f"clm rollback exited {proc.returncode}: {out[-1500:]} {proc.stderr[-1500:]}")
        switch = _SWITCH_MS.search(out)
        reported = {"switch_ms": float(switch.group(1)) if switch else None, "warm": "weight flip" in out,
                    "process_s": round(t1 - t0, 4), **_import_times(proc.stderr), "output": out[-300:]}  # fmt: skip
        return Move(t0, t1, old, new, reported)

    run = _load(backend, move, args.cli_rollbacks, args)
    out = section(analyse(run.requests, run.moves), run)
    rows = out["per_move"]
    for r in rows:
        r["start_s"] = None if r["to_100_s"] is None or r["switch_ms"] is None else round(
            r["to_100_s"] - r["switch_ms"] / 1000, 4)  # fmt: skip
    for key in ("start_s", "process_s", "imports_s", "mlflow_import_s"):
        out[key] = summary([r[key] for r in rows if r[key] is not None], 1.0, 4)
    out["process_only"] = _process_only(env)
    return out


def _process_only(env: dict, n: int = 3) -> dict:
    """What a process costs before any work: ``python -c pass``, and ``clm rollback --help`` (the CLI's imports)."""
    out = {}
    commands = {"python_s": ["-c", "pass"], "clm_rollback_help_s": ["-m", "clm_lib.cli", "rollback", "--help"]}
    for name, argv in commands.items():
        times = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run([sys.executable, *argv], env=env, capture_output=True, timeout=120, check=True)
            times.append(time.perf_counter() - t)
        out[name] = summary(times, 1.0, 4)
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
    parser.add_argument("--registry", choices=sorted(REGISTRIES), default="server",
                        help="MLflow registry the rollbacks use: a real `mlflow server` (as in production, default), "
                        "its SQLite store opened directly (file), or one run with each (both)")  # fmt: skip
    parser.add_argument("--rollbacks", type=int, default=20,
                        help="rollback() calls under load, per registry and database")  # fmt: skip
    parser.add_argument("--cli-rollbacks", type=int, default=4,
                        help="`clm rollback` processes under load (0: none), server registry if measured")  # fmt: skip
    parser.add_argument("--server-lifetime", type=float, default=1800.0,
                        help="seconds after which the benchmark's MLflow server stops by itself")  # fmt: skip
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
    if min(args.rollbacks, args.switches, args.clients) < 1 or args.overhead_requests < 10 or args.cli_rollbacks < 0:
        parser.error("need at least 1 rollback, 1 switch, 1 client and 10 overhead requests")
    if args.interval <= 0 or args.time_cap <= 0:
        parser.error("--interval and --time-cap must be positive")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL server URL (postgresql://...); SQLite is always measured")

    from clm_lib.config import load_config
    from clm_lib.services.processes import port_in_use
    from clm_lib.serving.backends.local import LocalBackend

    logging.getLogger("clm_lib.deploy").setLevel(logging.ERROR)  # one warning per rollback otherwise
    registries = REGISTRIES[args.registry]
    load_at_start = os.getloadavg()
    with ExitStack() as stack:
        home = Path(args.home or stack.enter_context(tempfile.TemporaryDirectory(prefix="clm-bench-rollback-")))
        ports = free_ports(3)
        environ = {
            "CLM_HOME": str(home),
            "CLM__SERVING__ROUTER_PORT": str(ports[0]),
            "CLM__SERVING__BLUE_PORT": str(ports[1]),
            "CLM__SERVING__GREEN_PORT": str(ports[2]),
            "CLM__SERVING__DEVICE": "cpu",
            **{f"CLM__DEPLOY__{k}": v for k, v in DEPLOY.items()},
            **({"CLM__MODEL__BASE_PATH": str(Path(args.base_model).resolve())} if args.base_model else {}),
        }
        if any(port_in_use("127.0.0.1", p) for p in ports):
            raise SystemExit("clm: error: a free port was taken before the benchmark started; run it again")
        home.mkdir(parents=True, exist_ok=True)
        uris = {"file": f"sqlite:///{home / 'mlflow.db'}"}
        if "server" in registries:
            t = time.perf_counter()
            uris["server"] = stack.enter_context(mlflow_server(uris["file"], home / "mlartifacts",
                                                               home / "logs" / "bench-mlflow-server.log",
                                                               lifetime_s=args.server_lifetime))  # fmt: skip
            print(f"mlflow server up at {uris['server']} in {time.perf_counter() - t:.1f} s", flush=True)
        cfgs = {r: load_config(TINY, environ={**environ, "MLFLOW_TRACKING_URI": uris[r]}) for r in registries}
        primary = registries[-1]  # the server when there is one: set up, and the CLI run, as in production
        cfg = cfgs[primary]
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
        pg_url = stack.enter_context(throwaway_postgres(args.database_url)) if args.database_url else None
        rollbacks: dict[str, dict[str, dict]] = {}
        for registry in registries:
            rollbacks[registry] = {"sqlite": rollbacks_under_load(cfgs[registry], backend, args)}
            _report(f"rollback(), {registry} registry, clm db on SQLite", rollbacks[registry]["sqlite"])
            if pg_url:
                pg = cfgs[registry].model_copy(deep=True)
                pg.database.url = pg_url
                rollbacks[registry]["postgresql"] = rollbacks_under_load(pg, backend, args)
                _report(f"rollback(), {registry} registry, clm db on PostgreSQL", rollbacks[registry]["postgresql"])
        cli = None
        if args.cli_rollbacks:
            cli_env = {**os.environ, **environ, "CLM_CONFIG": str(TINY), "MLFLOW_TRACKING_URI": uris[primary]}
            cli = {"registry": primary, **cli_rollbacks_under_load(backend, cli_env, args)}
            _report(f"clm rollback (new process), {primary} registry", cli)
        switches = switches_under_load(backend, args)
        _report("set_weights alone", switches)
        # What a bake window would have read over the load phases: the router's own per-slot numbers.
        router_stats = {s: backend.live_metrics(s, load_since).as_dict() for s in ("blue", "green")}

    in_process = [r for by_db in rollbacks.values() for r in by_db.values()]
    phases = [*in_process, *([cli] if cli else []), switches]
    failed = sum(p["load"]["failed_requests"] for p in phases)
    p95s = [r["to_100_s"].get("p95", float("inf")) for r in in_process]
    result = {
        "command": " ".join(["clm bench rollback", *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "home", "base_model", "database_url")},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
            "load_avg_at_start": load_at_start,
        },
        "model": "include/tiny.yaml demo model, two registered versions with different LoRA adapters",
        "setup": f"versions {versions} promoted in turn with rollout() ({DEPLOY['STRATEGY']}, "
        f"{DEPLOY['BAKE_SECONDS']} s bake, golden set off) through the {primary} registry; MLflow store: "
        "SQLite under the temporary home, opened directly (file) or by a lean `mlflow server` on 127.0.0.1 (server)",
        "registries": registries,
        "failed_requests": failed,
        "requests": sum(p["load"]["requests"] for p in phases),
        "rollback": rollbacks,
        "cli_rollback": cli,
        "weight_switch": switches,
        "router_overhead": overhead,
        "router_live_metrics": router_stats,
        "targets": TARGETS,
    }
    result["met"] = {
        "rollback_p95_s": all(p <= TARGETS["rollback_p95_s"] for p in p95s)
        and not any(r["never_reached_100"] or r["stopped_early"] for r in in_process),
        "failed_requests": failed <= TARGETS["failed_requests"],
        "router_overhead_p50_ms": overhead["overhead_p50_ms"] <= TARGETS["router_overhead_p50_ms"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"failed requests {failed} of {result['requests']}; targets met: {result['met']}; results in {args.out}")
    return 0 if all(result["met"].values()) else 1


def _report(what: str, s: dict) -> None:
    to, call = s["to_100_s"], s["call_s"]
    extra = f", switch_ms p95 {s['switch_ms'].get('p95')}" if "switch_ms" in s else ""
    if s.get("mlflow_http", {}).get("per_call"):
        h = s["mlflow_http"]
        extra += (f"; MLflow requests per call p50 {h['per_call']['p50']:g} ({h['before_switch_per_call']['p50']:g} "
                  f"before the switch, {h['before_switch_ms'].get('p50')} ms)")  # fmt: skip
    if "start_s" in s:
        extra += (f"; process p50 {s['process_s'].get('p50')} s, start p50 {s['start_s'].get('p50')} s, imports p50 "
                  f"{s['imports_s'].get('p50')} s (MLflow {s['mlflow_import_s'].get('p50')} s)")  # fmt: skip
    print(f"{what}: {s['moves']} under load ({s['load']['requests']} requests, {s['load']['requests_per_s']}/s, "
          f"{s['load']['failed_requests']} failed): to 100 % p50 {to.get('p50', 0) * 1000:.1f} ms, "
          f"p95 {to.get('p95', 0) * 1000:.1f} ms; call p95 {call.get('p95', 0) * 1000:.1f} ms{extra}; "
          f"late {s['late_requests']}, never at 100 % {s['never_reached_100']}"
          + (f"; stopped early: {s['stopped_early']}" if s["stopped_early"] else ""), flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
