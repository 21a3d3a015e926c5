"""The real clm stack for end-to-end tests.

``airflow_stack`` runs ``clm init`` and ``clm up`` as subprocesses (the real CLI) in a temp CLM_HOME on free
ports, once per test session, and ``clm down`` at the end, checking that no process is left behind. The config is
``include/tiny.yaml`` when it exists (small and fast), else ``include/clm.yaml``. Timings go to
``<pytest basetemp>/<name>-timings.json`` and to stdout (``-s``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.e2e.browsing import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[2]
CLM = (sys.executable, "-m", "clm_lib.cli")
# Variables of the developer's shell or of this test session that must not leak into the stack.
_LEAKY_PREFIXES = ("AIRFLOW", "CLM_", "MLFLOW_")


LAST = ("test_approval.py",)
"""Files that change the champion for good: they run after every other e2e file, which expect the cycle's versions."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    items.sort(key=lambda item: item.path.parent == here and item.path.name in LAST)  # stable: the rest keep order


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowStack:
    """A running clm stack and what tests need to talk to it."""

    home: Path
    base_url: str
    mlflow_url: str
    username: str
    password: str
    env: dict[str, str]
    """Environment for further ``clm`` / ``airflow`` commands against this stack."""
    timings: dict[str, float] = field(default_factory=dict)

    def token(self) -> str:
        """A JWT for the admin user from ``POST /auth/token``."""
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def clm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``clm <args>`` against this stack."""
        return subprocess.run([*CLM, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` against this stack."""
        cmd = [sys.executable, "-m", "airflow", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home)

    def processes(self) -> list[psutil.Process]:
        """Every process of the stack: the started components, their descendants, and anything else in its home."""
        procs: dict[int, psutil.Process] = {}
        for pid_file in (self.home / "run").glob("*.pid"):
            try:
                root = psutil.Process(int(pid_file.read_text().split()[0]))
                for p in (root, *root.children(recursive=True)):
                    procs[p.pid] = p
            except (ValueError, OSError, psutil.Error):
                pass
        for p in psutil.process_iter():
            try:
                if p.pid not in procs and p.environ().get("CLM_HOME") == str(self.home):
                    procs[p.pid] = p
            except psutil.Error:
                pass
        return list(procs.values())


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def _run_clm(env: dict[str, str], *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    done = subprocess.run([*CLM, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - t0


@contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    env: dict[str, str],
    init_args: tuple[str, ...] = (),
    reserved: frozenset[int] = frozenset(),
) -> Iterator[AirflowStack]:
    """``clm init`` and ``clm up`` in a new home on free ports, with ``env`` on top of this process's environment
    (less the variables that must not leak in); ``clm down`` afterwards, checking that no process is left behind.
    ``reserved``: ports ``env`` already gives to something else."""
    home = tmp_path_factory.mktemp(name) / "home"
    tiny = REPO / "include" / "tiny.yaml"
    config = tiny if tiny.exists() else REPO / "include" / "clm.yaml"
    ports_taken: set[int] = set()
    while len(ports_taken - reserved) < 5:  # Airflow, MLflow, the serving router and its two slots
        ports_taken.add(free_port())
    airflow_port, mlflow_port, router_port, blue_port, green_port = sorted(ports_taken - reserved)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)} | {
        "CLM_HOME": str(home),
        "CLM_CONFIG": str(config),
        # Commands that read cfg.server (clients of the API, say) find this stack's ports.
        "CLM__SERVER__AIRFLOW_PORT": str(airflow_port),
        "CLM__SERVER__MLFLOW_PORT": str(mlflow_port),
        # clm_promotion starts serving slots and a router; keep them off the default ports a dev stack may hold.
        "CLM__SERVING__ROUTER_PORT": str(router_port),
        "CLM__SERVING__BLUE_PORT": str(blue_port),
        "CLM__SERVING__GREEN_PORT": str(green_port),
    } | env
    ports = ("--airflow-port", str(airflow_port), "--mlflow-port", str(mlflow_port))
    timings: dict[str, float] = {}
    stack = None
    try:
        init, timings["clm_init_s"] = _run_clm(env, "init", *ports, *init_args, timeout=600)
        assert init.returncode == 0, f"clm init failed:\n{init.stdout}\n{init.stderr}"
        up, timings["clm_up_s"] = _run_clm(env, "up", *ports, timeout=600)
        assert up.returncode == 0, f"clm up failed:\n{up.stdout}\n{up.stderr}"
        exported, _ = _run_clm(env, "env", "--json", timeout=60)
        env |= json.loads(exported.stdout)
        fields = dict(
            line.split("=", 1) for line in (home / "admin-credentials").read_text().splitlines() if "=" in line
        )
        stack = AirflowStack(
            home=home,
            base_url=f"http://127.0.0.1:{airflow_port}",
            mlflow_url=f"http://127.0.0.1:{mlflow_port}",
            username=fields["username"],
            password=fields["password"],
            env=env,
            timings=timings,
        )
        yield stack
    finally:
        procs = stack.processes() if stack else []
        down, timings["clm_down_s"] = _run_clm(env, "down", timeout=300)
        psutil.wait_procs(procs, timeout=10)
        timings_file = tmp_path_factory.getbasetemp() / f"{name}-timings.json"
        timings_file.write_text(json.dumps(timings, indent=2))
        print(f"\n{name} timings: {timings}")
        assert down.returncode == 0, f"clm down failed:\n{down.stdout}\n{down.stderr}"
        left = _alive(procs)
        assert not left, f"clm down left processes behind: {[(p.pid, p.cmdline()) for p in left]}"


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    kafka_port = free_port()
    # Kafka ingestion on: `clm up` starts a Tansu broker, and clm_ingest_stream gets its Asset watcher.
    kafka = {"CLM__INGEST__KAFKA__ENABLED": "true", "CLM__INGEST__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}"}
    with running_stack(tmp_path_factory, "clm-e2e", kafka, reserved=frozenset({kafka_port})) as stack:
        yield stack


@dataclass(frozen=True)
class StackUser:
    """A user of the stack's Airflow (FAB auth manager) that tests log in as."""

    username: str
    password: str
    role: str
    """The FAB role: ``Op`` may trigger DAGs (clm's operator actions), ``Viewer`` may only read."""

    def token(self, base_url: str) -> str:
        """A JWT for this user from ``POST /auth/token``."""
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(
            f"{base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]


@pytest.fixture(scope="session")
def stack_users(airflow_stack: AirflowStack) -> dict[str, StackUser]:
    """``{"operator": ..., "viewer": ...}``: users with the FAB roles Op and Viewer, created once in the stack's
    Airflow (``airflow users create``; one that already exists is kept)."""
    users = {}
    for key, role in (("operator", "Op"), ("viewer", "Viewer")):
        user = StackUser(f"e2e-{key}", f"{key}-pw-{os.getpid()}", role)
        made = airflow_stack.airflow(
            "users", "create", "-u", user.username, "-p", user.password, "-r", role,
            "-f", key.title(), "-l", "E2e", "-e", f"{user.username}@example.com",
        )  # fmt: skip
        said = made.stdout + made.stderr
        assert made.returncode == 0 or "already exist" in said, said[-2000:]
        if made.returncode != 0:  # made by an earlier session of this stack: its password is unknown, set ours
            reset = airflow_stack.airflow("users", "reset-password", "-u", user.username, "-p", user.password)
            assert reset.returncode == 0, (reset.stdout + reset.stderr)[-2000:]
        users[key] = user
    return users



@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go: ``$CLM_E2E_ARTIFACTS``, else ``build/screens/`` in the checkout (git-ignored)."""
    folder = Path(os.environ.get("CLM_E2E_ARTIFACTS") or REPO / "build" / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    """Debian's Chromium (/usr/bin/chromium) driven by Playwright, which never downloads a browser of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
