from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from clm_lib.errors import ClmError
from clm_lib.services import processes
from clm_lib.services.processes import Component

# Stands in for an Airflow component: logs a line, optionally ignores SIGTERM, optionally forks a "task" into a
# process group of its own (as Airflow's task supervisor does), then idles.
FAKE = """
import os, signal, subprocess, sys, time
print("fake component up", flush=True)
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--log-term" in sys.argv:
    signal.signal(signal.SIGTERM, lambda *_: (print(f"term at {time.time()}", flush=True), sys.exit(0)))
if "--task" in sys.argv:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], process_group=0)
if "--worker" in sys.argv:
    # Like a LocalExecutor worker: same process group, told to stop by its parent, never by a signal from outside.
    worker = subprocess.Popen([sys.executable, "-c", WORKER])
    def shut_down(*_):
        worker.send_signal(signal.SIGUSR1)
        worker.wait()
        sys.exit(0)
    signal.signal(signal.SIGTERM, shut_down)
if "--exit" in sys.argv:
    sys.exit(3)
time.sleep(120)
"""
WORKER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("worker got SIGTERM from outside", flush=True), sys.exit(1)))
signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))
time.sleep(120)
"""


@pytest.fixture
def fake(tmp_path: Path):
    script = tmp_path / "clm_fake_component.py"
    script.write_text(f"WORKER = {WORKER!r}\n" + FAKE)

    def make(name: str = "fake", *flags: str) -> Component:
        return Component(name, (sys.executable, str(script), *flags), r"clm_fake_component")

    return make


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _gone(pid: int) -> bool:
    # A zombie has exited; only its parent (here: nobody, or init) has still to reap it.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_find_and_stop_leave_nothing_behind(runtime_cfg, fake):
    comp = fake("fake", "--task")
    started = processes.start(runtime_cfg, comp, dict(os.environ))
    proc = processes.find(runtime_cfg, comp)
    assert proc is not None and proc.pid == started.pid
    assert os.getpgid(proc.pid) == proc.pid  # a process group of its own
    assert processes.pid_file(runtime_cfg, "fake").read_text().split()[0] == str(started.pid)
    task = _wait_for(lambda: proc.children())[0]
    # The child is seen as soon as it is forked; it moves to its own group a moment later, before exec.
    _wait_for(lambda: os.getpgid(task.pid) != proc.pid)
    _wait_for(lambda: "fake component up" in processes.log_tail(started.log, started.log_offset))

    outcomes = processes.stop(runtime_cfg, [comp], timeout=10, task_grace=0.5)
    assert outcomes["fake"].outcome == "stopped"
    assert _gone(task.pid)  # the task outside the group went too, after the grace period
    assert processes.find(runtime_cfg, comp) is None
    assert not processes.pid_file(runtime_cfg, "fake").exists()
    assert processes.stop(runtime_cfg, [comp])["fake"].outcome == "not running"


def test_only_the_main_process_is_asked_to_stop(runtime_cfg, fake):
    comp = dataclasses.replace(fake("scheduler-like", "--worker"), term_group=False)
    started = processes.start(runtime_cfg, comp, dict(os.environ))
    proc = processes.find(runtime_cfg, comp)
    worker = _wait_for(lambda: proc.children())[0]
    assert os.getpgid(worker.pid) == proc.pid
    assert processes.stop(runtime_cfg, [comp], timeout=10)["scheduler-like"].outcome == "stopped"
    assert _gone(worker.pid)
    assert "worker got SIGTERM" not in processes.log_tail(started.log, started.log_offset)


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(runtime_cfg, fake):
    comp = fake("stubborn", "--ignore-term")
    started = processes.start(runtime_cfg, comp, dict(os.environ))
    _wait_for(lambda: "fake component up" in processes.log_tail(started.log, started.log_offset))
    t0 = time.monotonic()
    outcome = processes.stop(runtime_cfg, [comp], timeout=1.0)["stubborn"]
    assert outcome.outcome == "killed" and 1.0 <= outcome.seconds < 5
    assert time.monotonic() - t0 < 6
    assert _gone(started.pid)


def test_servers_are_stopped_after_the_components_that_call_them(runtime_cfg, fake):
    client = fake("client", "--ignore-term")
    server = Component("server", fake("server", "--log-term").argv, r"clm_fake_component", "http://127.0.0.1:1")
    started = {c.name: processes.start(runtime_cfg, c, dict(os.environ)) for c in (server, client)}
    for s in started.values():
        _wait_for(lambda s=s: "fake component up" in processes.log_tail(s.log, s.log_offset))
    t0 = time.time()
    outcomes = processes.stop(runtime_cfg, [server, client], timeout=1.0)
    assert (outcomes["client"].outcome, outcomes["server"].outcome) == ("killed", "stopped")
    log = processes.log_tail(started["server"].log, started["server"].log_offset)
    termed_at = float(log.split("term at ")[1].split()[0])
    assert termed_at - t0 >= 1.0  # only once the client had been dealt with
    assert outcomes["server"].seconds > outcomes["client"].seconds


def test_a_component_that_dies_reports_its_exit_code(runtime_cfg, fake):
    comp = fake("dies", "--exit")
    started = processes.start(runtime_cfg, comp, dict(os.environ))
    assert _wait_for(lambda: processes.exit_code(started.pid)) == 3
    assert processes.find(runtime_cfg, comp) is None
    assert processes.exit_code(os.getpid()) is None  # not our child: unknown, not "dead"


def test_pid_files_are_trusted_only_for_the_same_process_and_program(runtime_cfg, fake):
    comp = fake()
    path = processes.pid_file(runtime_cfg, comp.name)
    path.parent.mkdir(parents=True)
    path.write_text(f"{os.getpid()}\n")  # alive, but pytest, not the component
    assert processes.find(runtime_cfg, comp) is None
    path.write_text("not a pid\n")
    assert processes.find(runtime_cfg, comp) is None

    started = processes.start(runtime_cfg, comp, dict(os.environ))
    try:
        assert processes.find(runtime_cfg, comp) is not None
        # The wall clock stepped back an hour since (a VM resumed, NTP): the file looks older than the process.
        old = time.time() - 3600
        os.utime(path, (old, old))
        assert processes.find(runtime_cfg, comp).pid == started.pid
        mark = path.read_text().split()[1]
        path.write_text(f"{started.pid} {mark}0\n")  # another process that got the same pid later
        assert processes.find(runtime_cfg, comp) is None
        path.write_text(f"{started.pid}\n")  # a pid file from before marks: the program still has to match
        assert processes.find(runtime_cfg, comp).pid == started.pid
    finally:
        os.kill(started.pid, 9)
        _wait_for(lambda: processes.exit_code(started.pid) is not None)


def test_log_tail_shows_only_the_latest_run(runtime_cfg, fake):
    first = processes.start(runtime_cfg, fake("once", "--exit"), dict(os.environ))
    _wait_for(lambda: processes.exit_code(first.pid) is not None)
    second = processes.start(runtime_cfg, fake("once", "--exit"), dict(os.environ))
    _wait_for(lambda: processes.exit_code(second.pid) is not None)
    assert processes.log_tail(second.log, second.log_offset).count("fake component up") == 1
    assert processes.log_tail(second.log).count("fake component up") == 2
    assert processes.log_tail(second.log, lines=1).startswith("fake component up")
    assert processes.log_tail(runtime_cfg.home / "missing.log") == ""


def test_plan_stack_serves_the_local_store_through_a_lean_mlflow(runtime_cfg):
    stack = processes.plan_stack(runtime_cfg, airflow_port=18001, mlflow_port=15001)
    assert (stack.airflow_url, stack.mlflow_url) == ("http://127.0.0.1:18001", "http://127.0.0.1:15001")
    assert stack.tracking_store == f"sqlite:///{runtime_cfg.home / 'mlflow.db'}"
    assert stack.tracking_uri == stack.mlflow_url
    comps = {c.name: c for c in stack.components()}
    assert list(comps) == ["mlflow", "api-server", "scheduler", "dag-processor", "triggerer"]
    mlflow = comps["mlflow"]
    option = {mlflow.argv[i]: mlflow.argv[i + 1] for i in range(len(mlflow.argv) - 1)}
    assert (option["--workers"], option["--host"]) == ("1", "127.0.0.1")
    assert option["--default-artifact-root"] == str(runtime_cfg.home / "mlartifacts")
    # The store goes by environment: a command line is public in `ps`, and a PostgreSQL store URL has a password.
    assert dict(mlflow.env) == {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BACKEND_STORE_URI": stack.tracking_store,
    }
    assert "--backend-store-uri" not in mlflow.argv
    assert "--skip-serve-logs" in comps["scheduler"].argv and "--skip-serve-logs" in comps["triggerer"].argv
    assert not comps["scheduler"].term_group and comps["triggerer"].term_group
    default = processes.plan_stack(runtime_cfg)
    assert (default.airflow_port, default.mlflow_port) == (8080, 5000)


def test_plan_stack_leaves_a_remote_tracking_server_alone(runtime_cfg, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.internal")
    stack = processes.plan_stack(runtime_cfg)
    assert stack.tracking_store is None and stack.tracking_uri == "https://mlflow.example.internal"
    assert "mlflow" not in [c.name for c in stack.components()]
    # clm's own export pointing at its own server is not a remote server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:15001/")
    assert processes.plan_stack(runtime_cfg, mlflow_port=15001).tracking_store.startswith("sqlite:///")


def test_stack_record_round_trips_and_a_broken_one_is_ignored(runtime_cfg):
    assert processes.load_stack(runtime_cfg) is None
    stack = processes.plan_stack(runtime_cfg, airflow_port=18002)
    processes.save_stack(runtime_cfg, stack)
    assert processes.load_stack(runtime_cfg) == stack
    (runtime_cfg.home / "run" / "stack.json").write_text("{]")
    assert processes.load_stack(runtime_cfg) is None
    processes.clear(runtime_cfg)
    assert not (runtime_cfg.home / "run" / "stack.json").exists()


def test_a_taken_port_is_refused_with_the_option_to_change_it(runtime_cfg):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert processes.port_in_use("127.0.0.1", port)
        stack = processes.plan_stack(runtime_cfg, airflow_port=port)
        with pytest.raises(ClmError, match=rf"127\.0\.0\.1:{port} for api-server .* --airflow-port"):
            processes.check_ports_free(stack, ["api-server"])
        processes.check_ports_free(stack, ["scheduler"])  # no port of its own
    assert not processes.port_in_use("127.0.0.1", port)


def test_memory_adds_up_rss_and_pss():
    rss, pss = processes.memory([psutil.Process()])
    assert rss > 10 * 2**20 and 0 < pss <= rss


def test_stack_record_holds_no_password_yet_gives_it_back(runtime_cfg, monkeypatch):
    store = "postgresql+psycopg2://mlflow:hunter2@db:5432/mlflow"
    monkeypatch.setenv("CLM__REGISTRY__TRACKING_URI", store)
    from clm_lib.config import load_config

    cfg = load_config()
    stack = processes.plan_stack(cfg)
    assert stack.tracking_store == store
    processes.save_stack(cfg, stack)
    saved = (cfg.home / "run" / "stack.json").read_text()
    assert "hunter2" not in saved and "postgresql+psycopg2://mlflow:***@db:5432/mlflow" in saved
    assert processes.load_stack(cfg) == stack  # the real URL comes back from the config, not the file
    monkeypatch.setenv("CLM__REGISTRY__TRACKING_URI", "postgresql+psycopg2://mlflow:hunter2@elsewhere/mlflow")
    assert processes.load_stack(load_config()).tracking_store == "postgresql+psycopg2://mlflow:***@db:5432/mlflow"


def test_the_celery_executor_adds_a_worker_of_this_home_on_its_queue(runtime_cfg):
    assert "celery-worker" not in [c.name for c in processes.plan_stack(runtime_cfg).components()]
    runtime_cfg.server.executor = "celery"
    runtime_cfg.server.celery.queue = "clm-a"
    runtime_cfg.registry.artifacts_uri = "s3://bucket/mlartifacts"
    stack = processes.plan_stack(runtime_cfg)
    comps = {c.name: c for c in stack.components()}
    assert list(comps)[-1] == "celery-worker"
    worker = comps["celery-worker"].argv
    option = {worker[i]: worker[i + 1] for i in range(len(worker) - 1)}
    assert worker[1:5] == ("-m", "airflow", "celery", "worker") and "--skip-serve-logs" in worker
    assert (option["--queues"], option["--concurrency"]) == ("clm-a", "2")
    assert option["--celery-hostname"] == stack.celery_worker_name
    elsewhere = processes.plan_stack(runtime_cfg.model_copy(update={"paths": runtime_cfg.paths.model_copy(
        update={"home": runtime_cfg.home / "other"})}))  # fmt: skip
    assert elsewhere.celery_worker_name != stack.celery_worker_name  # a ping finds this home's worker only
    mlflow = comps["mlflow"].argv
    assert mlflow[mlflow.index("--default-artifact-root") + 1] == "s3://bucket/mlartifacts"
    processes.save_stack(runtime_cfg, stack)
    assert processes.load_stack(runtime_cfg) == stack  # `clm status` / `clm down` know the worker is theirs
