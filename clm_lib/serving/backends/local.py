"""The ``local`` backend: two ``clm serve`` processes and the router, on this machine's loopback.

Processes are started detached with :mod:`clm_lib.services.processes` (pid files in ``$CLM_HOME/run/serving-*.pid``,
logs in ``$CLM_HOME/logs/serving-*.log``), so they outlive the Airflow task or CLI command that started them, and
any later process drives the same slots from ``$CLM_HOME/serving/``:

- ``state.json``: each slot's version and port, and the weights (the router starts with them after a restart);
- ``config.yaml``: the effective config the processes run with (the caller's, overrides included), secrets
  redacted: the real database URL and tracking URI reach the processes by environment;
- ``router.token``: the secret for the router's admin route (mode 0600).

Read-modify-write of the state holds an ``flock`` on ``state.lock``. The router's answers are the truth about
weights and live traffic; the state file is what it starts from.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import yaml

from clm_lib.config import ClmConfig
from clm_lib.errors import ServingError
from clm_lib.services import processes
from clm_lib.serving.backends import register_backend
from clm_lib.serving.backends.base import (
    SLOTS,
    ServingBackend,
    SlotMetrics,
    SlotStatus,
    check_slot,
    check_weights,
    other_slot,
)
from clm_lib.serving.backends.probe import error_message, smoke

LOOPBACK = ("127.0.0.1", "localhost")
# Variables that would make a child read another config than the caller's snapshot.
_CONFIG_ENV = ("CLM_CONFIG", "CLM_HOME", "CLM_DATA_URI", "CLM_DATABASE_URL", "MLFLOW_TRACKING_URI")


class LocalBackend(ServingBackend):
    def __init__(self, cfg: ClmConfig):
        if cfg.serving.host not in LOOPBACK:
            raise ServingError(
                f"the local backend listens on loopback only, not serving.host={cfg.serving.host!r} "
                "(a non-loopback host is for the server inside a container)"
            )
        self.cfg = cfg
        self.dir = cfg.home / "serving"
        # Loopback clients only; trust_env=False so an HTTP(S)_PROXY variable never captures 127.0.0.1 calls.
        self.http = httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0), trust_env=False)

    # --- addresses and files -----------------------------------------------------------------------------
    def slot_urls(self) -> dict[str, str]:
        return {s: f"http://{self.cfg.serving.host}:{self.cfg.serving.slot_port(s)}" for s in SLOTS}

    @property
    def router_url(self) -> str:
        return f"http://{self.cfg.serving.host}:{self.cfg.serving.router_port}"

    def router_token(self) -> str:
        path = self.dir / "router.token"
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The state, locked; what the block leaves in it is saved (atomically) on exit."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "state.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read_state()
            yield state
            tmp = self.dir / "state.json.tmp"
            tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.dir / "state.json")

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        state.setdefault("slots", {})
        state.setdefault("weights", dict.fromkeys(SLOTS, 0))
        return state

    def stored_weights(self) -> dict[str, int]:
        return check_weights(self._read_state()["weights"], allow_none=True)

    def _child_env(self) -> dict[str, str]:
        snapshot = self.dir / "config.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = snapshot.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        os.replace(tmp, snapshot)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLM__") and k not in _CONFIG_ENV}
        quiet = {"PYTHONUNBUFFERED": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        # The snapshot holds the URLs redacted (clm_lib/redaction.py); the real ones reach the children by
        # environment, which wins over the file, and never touch the disk.
        secret = {"CLM_DATABASE_URL": self.cfg.database_url, "MLFLOW_TRACKING_URI": self.cfg.tracking_uri}
        return env | quiet | secret | {"CLM_CONFIG": str(snapshot), "CLM_HOME": str(self.cfg.home)}

    def _component(self, name: str, version: str | None = None) -> processes.Component:
        clm = (sys.executable, "-m", "clm_lib.cli")
        where = ("--host", self.cfg.serving.host)
        if name == "router":
            argv = (*clm, "router", "--port", str(self.cfg.serving.router_port), *where)
            return processes.Component("serving-router", argv, r"clm_lib\.cli router", self.router_url)
        port = str(self.cfg.serving.slot_port(name))
        argv = (*clm, "serve", "--version", version or "?", "--slot", name, "--port", port, *where)
        signature = rf"clm_lib\.cli serve .*--slot {name}\b"
        return processes.Component(f"serving-{name}", argv, signature, self.slot_urls()[name])

    # --- the interface -------------------------------------------------------------------------------------
    def deploy(self, slot: str, model_version: str) -> SlotStatus:
        from clm_lib.serving.model import resolve_version

        check_slot(slot)
        version = resolve_version(self.cfg, version=model_version)
        current = self.status()[slot]
        if current.weight > 0:
            raise ServingError(
                f"slot {slot} carries {current.weight}% of traffic; deploy into {other_slot(slot)} and shift weights"
            )
        if current.version == version and current.healthy:
            self._ensure_router()
            return current
        comp = self._component(slot, version)
        processes.stop(self.cfg, [comp], self.cfg.serving.drain_timeout_s + 5)
        port = self.cfg.serving.slot_port(slot)
        if processes.port_in_use(self.cfg.serving.host, port):
            raise ServingError(f"port {port} of slot {slot} is held by another process (serving.{slot}_port)")
        started = processes.start(self.cfg, comp, self._child_env())
        self._wait(slot, started, lambda body: body.get("version") == version and body.get("ready"), version)
        with self._state() as state:
            state["slots"][slot] = {"version": version, "port": port, "started_at": time.time()}
            if not any(state["weights"].values()):
                # The first version deployed takes the traffic: there was nothing to protect.
                state["weights"] = {slot: 100, other_slot(slot): 0}
        self._ensure_router()
        return self.status()[slot]

    def _wait(self, name: str, started: processes.Started, ready, what: str) -> None:
        url = self.router_url if name == "router" else self.slot_urls()[name]
        timeout = self.cfg.serving.startup_timeout_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = processes.exit_code(started.pid)
            if code is not None:
                tail = processes.log_tail(started.log, started.log_offset)
                raise ServingError(f"{name} ({what}) exited with code {code} while starting:\n{tail}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if ready(self.http.get(f"{url}/healthz", timeout=1.0).json()):
                    return
            time.sleep(0.2)
        processes.stop(self.cfg, [started.component], 5)
        tail = processes.log_tail(started.log, started.log_offset)
        raise ServingError(f"{name} ({what}) not ready after {timeout:.0f} s; stopped it. Log:\n{tail}")

    def _ensure_router(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.get(f"{self.router_url}/healthz", timeout=1.0)
            return
        comp = self._component("router")
        if processes.port_in_use(self.cfg.serving.host, self.cfg.serving.router_port):
            raise ServingError(f"port {self.cfg.serving.router_port} of the router is held by another process")
        self.router_token()
        started = processes.start(self.cfg, comp, self._child_env())
        self._wait("router", started, lambda body: "weights" in body, "router")

    def set_weights(self, weights: dict[str, int]) -> None:
        weights = check_weights(weights)
        with self._state() as state:
            empty = [s for s, w in weights.items() if w > 0 and s not in state["slots"]]
            if empty:
                raise ServingError(f"slot {empty[0]} has no model deployed; deploy before sending it traffic")
            # The router refuses slots its own health checks saw fail, but a slot killed since its last check
            # would still pass there: its process is gone now, which is cheap and certain to see.
            dead = [s for s, w in weights.items() if w > 0 and processes.find(self.cfg, self._component(s)) is None]
            if dead:
                raise ServingError(f"slot {dead[0]} is not healthy: process not running; redeploy it first")
            try:
                resp = self.http.put(
                    f"{self.router_url}/router/weights",
                    json={"weights": weights},
                    headers={"Authorization": f"Bearer {self.router_token()}"},
                )
            except httpx.HTTPError:
                resp = None  # no router: it starts below with the saved weights
            if resp is not None and resp.status_code != 200:
                raise ServingError(f"the router refused weights {weights}: {error_message(resp)}")
            state["weights"] = weights
        if resp is None:
            self._ensure_router()

    def weights(self) -> dict[str, int]:
        try:
            return check_weights(self.http.get(f"{self.router_url}/router/weights").json()["weights"], allow_none=True)
        except (httpx.HTTPError, ValueError, KeyError, ServingError):
            return self.stored_weights()

    def status(self) -> dict[str, SlotStatus]:
        state = self._read_state()
        weights = self.weights()
        out = {}
        for slot in SLOTS:
            entry = state["slots"].get(slot)
            url = self.slot_urls()[slot]
            proc = processes.find(self.cfg, self._component(slot))
            healthy, detail, version = False, "not deployed", entry and entry["version"]
            if proc is None and entry:
                detail = "process not running"
            elif proc is not None:
                try:
                    body = self.http.get(f"{url}/healthz", timeout=1.0).json()
                    healthy, version = bool(body.get("ready")), body.get("version", version)
                    detail = "ready" if healthy else str(body.get("status"))
                except (httpx.HTTPError, ValueError) as exc:
                    detail = f"not answering ({type(exc).__name__})"
            pid = proc.pid if proc else None
            out[slot] = SlotStatus(slot, version, healthy, url, weights.get(slot, 0), pid=pid, detail=detail)
        return out

    def live_metrics(self, slot: str, since: float) -> SlotMetrics:
        check_slot(slot)
        try:
            resp = self.http.get(f"{self.router_url}/router/stats", params={"slot": slot, "since": since})
        except httpx.HTTPError as exc:
            raise ServingError(f"the router is not answering ({type(exc).__name__}); no live metrics") from None
        if resp.status_code != 200:
            raise ServingError(f"the router refused live metrics for {slot}: {error_message(resp)}")
        return SlotMetrics(**resp.json())

    def stop(self, slot: str) -> None:
        check_slot(slot)
        weight = self.weights().get(slot, 0)
        if weight > 0:
            raise ServingError(f"slot {slot} carries {weight}% of traffic; shift it to {other_slot(slot)} first")
        processes.stop(self.cfg, [self._component(slot)], self.cfg.serving.drain_timeout_s + 5)
        with self._state() as state:
            state["slots"].pop(slot, None)

    def shutdown(self) -> None:
        """Stop the router and both slots, whatever they carry (``clm slots down``, tests, benchmarks)."""
        comps = [self._component("router"), *(self._component(s) for s in SLOTS)]
        processes.stop(self.cfg, comps, self.cfg.serving.drain_timeout_s + 5)
        with self._state() as state:
            state["slots"], state["weights"] = {}, dict.fromkeys(SLOTS, 0)
        self.http.close()

    def smoke_test(self, slot: str) -> None:
        st = self.status()[check_slot(slot)]
        if not st.healthy:
            raise ServingError(f"slot {slot} is not healthy: {st.detail}")
        smoke(self.http, st.url, self.cfg.registry.model_name, st.version, slot)


register_backend(name="local", backend_cls=LocalBackend)
