"""The ``clm`` command line: one function per command, each a thin layer over ``clm_lib``.

Add a command with ``@cli.command()`` and a function; load the config with :func:`get_config` and raise
:class:`~clm_lib.errors.ClmError` for anything the user must fix: it is printed as ``clm: error: ...``
(exit code 2), never as a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.exc import DBAPIError

from clm_lib import config_commands
from clm_lib.config import PROFILE_FILE, ClmConfig, load_config, profile_name
from clm_lib.data import commands as data_cli
from clm_lib.data import stream_commands
from clm_lib.data.landing_s3 import is_remote
from clm_lib.deploy import commands as deploy_cli
from clm_lib.deploy import watch_commands
from clm_lib.errors import ClmError
from clm_lib.redaction import redact_url
from clm_lib.services import airflow_home, health, processes
from clm_lib.serving import cli as serving_cli
from clm_lib.training import domain_cli, train_cli

T = TypeVar("T")
PORT = click.IntRange(1, 65535)


class _ClmGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClmError as exc:
            click.echo(f"clm: error: {exc}", err=True)
            ctx.exit(2)
        except DBAPIError as exc:
            from clm_lib.reporting.stores import first_line  # the reporting package: not on every command's path

            # A database that is down, refuses the login or was never migrated: the driver's first line says which.
            click.echo(f"clm: error: clm's database: {first_line(exc)} (run `clm init` to create or migrate it)",
                       err=True)
            ctx.exit(2)


@click.group(cls=_ClmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), help="clm YAML config (sets CLM_CONFIG).")
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), help="Folder of all local state (sets CLM_HOME)."
)
@click.option("--profile", help="Profile merged over the config for this command (sets CLM_PROFILE); see `clm init`.")
def cli(config: Path | None, home: Path | None, profile: str | None) -> None:
    """clm: continual learning for an on-prem LLM, run by Apache Airflow."""
    # Environment, not arguments: the processes clm starts (Airflow tasks included) must see the same choice.
    if config:
        os.environ["CLM_CONFIG"] = str(config.expanduser().resolve())
    if home:
        os.environ["CLM_HOME"] = str(home.expanduser().resolve())
    if profile:
        os.environ["CLM_PROFILE"] = profile


def get_config() -> ClmConfig:
    """The config selected by ``--config`` / ``$CLM_CONFIG`` (raises ``ConfigError``)."""
    return load_config()


def _step(label: str, work: Callable[[], T], done: Callable[[T], str]) -> T:
    """Run one step, printing ``label`` first and then what happened and how long it took."""
    click.echo(f"  {label:<13} ", nl=False)
    t0 = time.monotonic()
    try:
        result = work()
    except BaseException:
        click.echo("failed")
        raise
    click.echo(f"{done(result)} ({time.monotonic() - t0:.1f} s)")
    return result


def _credentials_hint(cfg: ClmConfig) -> str:
    creds = airflow_home.read_credentials(cfg)
    user = creds[0] if creds else airflow_home.ADMIN_USERNAME
    return f"login: {user} (password in {airflow_home.credentials_path(cfg)})"


@cli.command()
@click.option("--airflow-port", type=PORT, help="Airflow API/UI port (default: server.airflow_port).")
@click.option("--mlflow-port", type=PORT, help="MLflow port (default: server.mlflow_port).")
@click.option(
    "--airflow-db-url",
    help="Airflow metadata DB (SQLAlchemy URL, PostgreSQL in production). Default: "
    "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, else the URL of the last init, else SQLite under CLM_HOME.",
)
@click.option(
    "--profile",
    help="Initialise this home with a profile (include/profiles/<name>.yaml, or a .yaml path), e.g. production: "
    "PostgreSQL, Celery, S3. The home remembers it; `--profile local` goes back to the config file alone.",
)
def init(airflow_port: int | None, mlflow_port: int | None, airflow_db_url: str | None, profile: str | None) -> None:
    """Prepare CLM_HOME: airflow.cfg, Airflow's and clm's databases, and an admin login. Safe to re-run."""
    from clm_lib import audit, db
    from clm_lib.services import stores

    if profile:
        os.environ["CLM_PROFILE"] = "" if profile == "local" else profile
        _remember_profile(get_config().home, os.environ["CLM_PROFILE"])  # a profile never moves the home
    cfg = get_config()
    t0 = time.monotonic()
    stack = processes.plan_stack(cfg, airflow_port, mlflow_port)
    shown = _profile_in_force(cfg)
    click.echo(f"Preparing {cfg.home}" + (f" (profile {shown})" if shown else ""))
    log = cfg.logs_dir / "init.log"
    _step(
        "airflow.cfg",
        lambda: airflow_home.render_config(cfg, airflow_port=stack.airflow_port, sql_alchemy_conn=airflow_db_url),
        str,
    )
    _step("stores", lambda: stores.ensure_stores(cfg, airflow_home.chosen_sql_alchemy_conn(cfg)), _stores_line)
    env = airflow_home.airflow_env(cfg)
    _step("airflow db", lambda: airflow_home.migrate_airflow_db(cfg, env, log), lambda _: "migrated")
    _step("audit key", lambda: audit.key_source(cfg.home, create=True), str)
    _step("clm db", lambda: db.upgrade(cfg.database_url, audit_key=audit.audit_key(cfg.home)), lambda _: "migrated")
    _step("config", lambda: config_commands.seed_live(cfg), lambda n: f"revision {n} live")
    if not is_remote(cfg.landing_uri):
        cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    creds = _step(
        "admin user",
        lambda: airflow_home.ensure_admin_user(cfg, env, log),
        lambda c: f"{c.username} {'created' if c.created else 'kept'}",
    )
    _step(
        "role users",
        lambda: airflow_home.ensure_role_users(cfg, env, log),
        lambda cs: ", ".join(f"{c.username} {'created' if c.created else 'kept'}" for c in cs),
    )
    _step("plugin nav", lambda: airflow_home.grant_plugin_view(env, log), lambda roles: f"readable by {roles}")
    click.echo(f"Ready in {time.monotonic() - t0:.1f} s. Start it with `clm up`, then open:")
    click.echo(f"  Airflow  {stack.airflow_url}  login: {creds.username} / {creds.password}")
    click.echo(f"           (kept in {airflow_home.credentials_path(cfg)}, mode 0600)")
    others = ", ".join(f"{name} ({role})" for name, role in airflow_home.ROLE_USERS.items())
    click.echo(f"           also {others}: passwords in {cfg.home}/<user>-credentials")
    click.echo(f"  MLflow   {redact_url(stack.tracking_uri)}")


def _profile_in_force(cfg: ClmConfig) -> str | None:
    return profile_name({}, dict(os.environ, CLM_HOME=str(cfg.home)))


def _remember_profile(home: Path, profile: str) -> None:
    marker = home / PROFILE_FILE
    home.mkdir(parents=True, exist_ok=True)
    if profile:
        marker.write_text(profile + "\n", encoding="utf-8")
    else:
        marker.unlink(missing_ok=True)


def _stores_line(done: list) -> str:
    if not done:
        return "local files and SQLite"
    created = [s.what + " " + s.where for s in done if s.created]
    return f"{len(done)} answer" + (f"; created {', '.join(created)}" if created else "")


class _Progress:
    """One line per component while the stack starts: a spinner and seconds on a terminal, milestones otherwise."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, names: list[str], addresses: dict[str, str | None], starting: list[str]):
        self.names = names
        self.addresses = addresses
        self.tty = sys.stdout.isatty()
        self.ready: dict[str, float] = {}
        self.drawn = False
        self.tick = 0
        running = [n for n in names if n not in starting]
        click.echo(f"Starting {', '.join(starting)}" + (f" ({', '.join(running)} already running)" if running else ""))

    def _line(self, name: str, elapsed: float, detail: str) -> str:
        if name in self.ready:
            mark = "✓ " if self.tty else ""
            return f"  {mark}{name:<14} ready in {self.ready[name]:.1f} s  {self.addresses.get(name) or ''}".rstrip()
        return f"  {self.FRAMES[self.tick % len(self.FRAMES)]} {name:<14} {elapsed:4.0f} s  {detail}"

    def update(self, elapsed: float, details: dict[str, tuple[bool, str]]) -> None:
        self.tick += 1
        for name in self.names:
            ok, _ = details[name]
            if ok and name not in self.ready:
                self.ready[name] = elapsed
                if not self.tty:
                    click.echo(self._line(name, elapsed, ""))
        if self.tty:
            if self.drawn:
                click.echo(f"\x1b[{len(self.names)}F", nl=False)
            for name in self.names:
                click.echo("\x1b[2K" + self._line(name, elapsed, details[name][1]))
            self.drawn = True


def _wait_until_healthy(cfg: ClmConfig, stack: processes.Stack, started: list[processes.Started], timeout: float):
    """Poll health until every component is healthy; on a death or timeout stop what we started and fail."""
    names = [c.name for c in stack.components()]
    progress = _Progress(names, {c.name: c.address for c in stack.components()}, [s.component.name for s in started])
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        for s in started:
            code = processes.exit_code(s.pid)
            if code is not None:
                _abort(cfg, started, f"{s.component.name} exited with code {code} while starting", s)
        rows = {r.name: r for r in health.stack_status(cfg, stack)}
        progress.update(elapsed, {n: (rows[n].health.ok, rows[n].health.detail) for n in names})
        if all(r.health.ok for r in rows.values()):
            return
        if elapsed > timeout:
            waiting = ", ".join(n for n in names if not rows[n].health.ok)
            culprit = next((s for s in started if not rows[s.component.name].health.ok), None)
            _abort(cfg, started, f"not healthy after {timeout:.0f} s: {waiting}", culprit)
        time.sleep(0.5)


def _abort(cfg: ClmConfig, started: list[processes.Started], reason: str, culprit: processes.Started | None):
    if culprit is not None:
        click.echo(f"--- last lines of {culprit.log} ---", err=True)
        click.echo(processes.log_tail(culprit.log, culprit.log_offset) or "(empty)", err=True)
        click.echo("---", err=True)
    processes.stop(cfg, [s.component for s in started])
    raise ClmError(f"{reason}; stopped what this run started (logs in {cfg.logs_dir})")


def _what_to_start(
    cfg: ClmConfig, airflow_port: int | None, mlflow_port: int | None
) -> tuple[processes.Stack, list[processes.Component]]:
    """The stack to run and its components that are not running yet (none: it is all up already)."""
    stack = processes.load_stack(cfg)
    running = {c.name for c in stack.components() if processes.find(cfg, c)} if stack else set()
    if not running:
        # A fresh start: ports may change, so airflow.cfg is rendered again.
        stack = processes.plan_stack(cfg, airflow_port, mlflow_port)
        airflow_home.render_config(cfg, airflow_port=stack.airflow_port)
        return stack, stack.components()
    asked = (airflow_port or stack.airflow_port, mlflow_port or stack.mlflow_port)
    if asked != (stack.airflow_port, stack.mlflow_port):
        raise ClmError(
            f"clm already runs on ports {stack.airflow_port}/{stack.mlflow_port}; `clm down` first to change them"
        )
    return stack, [c for c in stack.components() if c.name not in running]


@cli.command()
@click.option("--airflow-port", type=PORT, help="Airflow API/UI port (default: server.airflow_port).")
@click.option("--mlflow-port", type=PORT, help="MLflow port (default: server.mlflow_port).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=240.0,
    show_default=True,
    help="Seconds to wait for every component to be healthy.",
)
@click.option(
    "--profile",
    help="Run this home with a profile (e.g. production: PostgreSQL, CeleryExecutor, S3); `clm init --profile` "
    "runs first when the home is not initialised with it.",
)
@click.pass_context
def up(ctx: click.Context, airflow_port: int | None, mlflow_port: int | None, timeout: float,
       profile: str | None) -> None:  # fmt: skip
    """Start Airflow (api-server, scheduler, dag-processor, triggerer; a Celery worker under the CeleryExecutor),
    MLflow and, when ingest.kafka is on with a loopback broker, a local Kafka-protocol broker (Tansu), all on
    127.0.0.1."""
    cfg = get_config()
    initialised = airflow_home.config_path(cfg).exists()
    if not initialised and not profile:
        raise ClmError(f"{cfg.home} is not initialised: run `clm init` first")
    in_force = _profile_in_force(cfg) or "local"
    if profile and (not initialised or in_force != profile):
        running = processes.load_stack(cfg)
        if running and any(processes.find(cfg, c) for c in running.components()):
            raise ClmError(f"clm runs in {cfg.home} with profile {in_force}: `clm down` first to switch to {profile}")
        ctx.invoke(init, airflow_port=airflow_port, mlflow_port=mlflow_port, airflow_db_url=None, profile=profile)
        cfg = get_config()
    stack, missing = _what_to_start(cfg, airflow_port, mlflow_port)
    if not missing:
        click.echo(f"clm is already running: Airflow {stack.airflow_url}, MLflow {redact_url(stack.tracking_uri)}")
        return
    if stack.kafka_port and any(c.name == "kafka" for c in missing):
        processes.tansu_binary()  # says how to install it, before anything starts
    if stack.executor == "celery":
        _check_broker(cfg)
    processes.check_ports_free(stack, [c.name for c in missing])
    processes.save_stack(cfg, stack)
    env = airflow_home.airflow_env(cfg, mlflow_tracking_uri=stack.tracking_uri)
    t0 = time.monotonic()
    started = [processes.start(cfg, c, env) for c in missing]
    try:
        _wait_until_healthy(cfg, stack, started, timeout)
    except KeyboardInterrupt:
        # The components run detached; interrupting the wait must not leave the user guessing.
        click.echo("\nStopped waiting; the components keep starting. See `clm status`, or stop them: `clm down`.")
        sys.exit(130)
    click.echo(f"clm is up ({time.monotonic() - t0:.1f} s)")
    click.echo(f"  Airflow  {stack.airflow_url}  {_credentials_hint(cfg)}")
    click.echo(f"  MLflow   {redact_url(stack.tracking_uri)}")
    if stack.kafka_port:
        _kafka_topic(cfg)
        click.echo(f"  Kafka    127.0.0.1:{stack.kafka_port}  topic {cfg.ingest.kafka.topic} (messages kept in memory)")
    click.echo(f"  logs     {cfg.logs_dir}")


def _check_broker(cfg: ClmConfig) -> None:
    # Celery would retry the broker for minutes while `clm up` waited on a worker that can never be ready.
    url = cfg.server.celery.broker_url.get_secret_value()
    problem = health.broker_problem(url)
    if problem:
        raise ClmError(f"the Celery broker {redact_url(url)} does not answer ({problem}): start it (Debian: "
                       "apt install redis-server) or point server.celery.broker_url at yours")


def _kafka_topic(cfg: ClmConfig) -> None:
    # No broker creates a topic on subscribe (STACK.md): create it, so the watcher and the task find it.
    from clm_lib.data.stream import ensure_topic

    if ensure_topic(cfg.ingest.kafka):
        click.echo(f"created Kafka topic {cfg.ingest.kafka.topic}")


@cli.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    # Idle components exit in 1-8 s and running tasks are failed after 10 s; a scheduler can still hang in
    # its LocalExecutor shutdown after its last task ended (seen once in 3.3.2), so do not wait for ever.
    default=15.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL (per phase: Airflow's workers, then the servers).",
)
def down(timeout: float) -> None:
    """Stop everything `clm up` started (running tasks are interrupted and fail). Safe to re-run."""
    cfg = get_config()
    stack = processes.load_stack(cfg) or processes.plan_stack(cfg)
    t0 = time.monotonic()
    outcomes = processes.stop(cfg, stack.components(), timeout)
    _stop_local_serving(cfg)
    processes.clear(cfg)
    if all(o.outcome == "not running" for o in outcomes.values()):
        click.echo("clm is not running")
        return
    for comp in stack.components():
        o = outcomes[comp.name]
        click.echo(f"  {comp.name:<14} {o.outcome}" + (f" ({o.seconds:.1f} s)" if o.outcome != "not running" else ""))
    click.echo(f"clm is down ({time.monotonic() - t0:.1f} s)")


def _stop_local_serving(cfg: ClmConfig) -> None:
    # The promotion DAG starts the serving slots and router detached, so they outlive its tasks: stop them too.
    if cfg.serving.backend != "local" or not (cfg.home / "serving").is_dir():
        return
    from clm_lib.serving.backends.local import LocalBackend

    LocalBackend(cfg).shutdown()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each component's pid, address, health and memory; exit 1 unless all are healthy."""
    cfg = get_config()
    stack = processes.load_stack(cfg) or processes.plan_stack(cfg)
    rows = health.stack_status(cfg, stack, with_memory=True)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "component": r.name,
                        "pid": r.pid,
                        "alive": r.alive,
                        "address": r.address,
                        "healthy": r.health.ok,
                        "health": r.health.detail,
                        "rss_bytes": r.rss,
                        "pss_bytes": r.pss,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        click.echo(f"{'COMPONENT':<14} {'PID':>7}  {'ALIVE':<5}  {'ADDRESS':<23} {'MEM (PSS)':>9}  HEALTH")
        for r in rows:
            mem = f"{r.pss / 2**20:.0f} MiB" if r.alive else "-"
            click.echo(
                f"{r.name:<14} {r.pid or '-':>7}  {'yes' if r.alive else 'no':<5}  {r.address or '-':<23} "
                f"{mem:>9}  {r.health.detail}"
            )
    ctx.exit(0 if all(r.health.ok for r in rows) else 1)


@cli.command()
@click.option(
    "--drops",
    type=click.IntRange(1, 20),
    default=4,
    show_default=True,
    help="Product lines that arrive, one drop each (at most data.tasks).",
)
@click.option("--rows-per-drop", type=click.IntRange(50, 100_000), default=800, show_default=True)
@click.pass_context
def demo(ctx: click.Context, drops: int, rows_per_drop: int) -> None:
    """Run the demo: set up and start clm, then let Airflow learn a stream of product lines, one drop at a time."""
    from clm_lib.demo.incident import run_incident
    from clm_lib.demo.steady import write_steady_drop
    from clm_lib.demo.stream import generate_task, write_demo_drops
    from clm_lib.demo.traffic import Traffic
    from clm_lib.demo.walkthrough import already_ran, run_walkthrough
    from clm_lib.services.airflow_client import AirflowClient

    t0 = time.monotonic()
    cfg = get_config()
    if not airflow_home.config_path(cfg).exists():
        ctx.invoke(init)
    ctx.invoke(up)
    stack = processes.load_stack(cfg) or processes.plan_stack(cfg)
    creds = airflow_home.read_credentials(cfg)
    if creds is None:
        raise ClmError(f"no admin credentials in {airflow_home.credentials_path(cfg)}: run `clm init`")
    if already_ran(cfg):
        click.echo(f"{cfg.home} already holds a demo run; its results are in the UI. `make clean` starts over.")
    else:
        tasks = cfg.data.tasks[:drops]
        files = write_demo_drops(cfg.home / "demo" / "drops", tasks=tasks, n_per_task=rows_per_drop, seed=0)
        # Last, more of what the model already knows: the drift check should find nothing worth retraining for.
        files.append(write_steady_drop(cfg.home / "demo" / "drops", tasks, rows_per_drop // 2, 101, len(files) + 1))
        click.echo(f"\nDropping {len(files)} files into {cfg.landing_uri}, one at a time; Airflow does the rest.")
        client = AirflowClient(stack.airflow_url, creds[0], creds[1])
        # This process and the `clm rollback` it runs must see the registry the stack's tasks write to.
        os.environ["MLFLOW_TRACKING_URI"] = stack.tracking_uri
        cfg = get_config()
        prompts = [r["prompt"] for t in tasks for r in generate_task(t, 50, seed=202)]
        router = f"http://{cfg.serving.host}:{cfg.serving.router_port}"
        with Traffic(router, cfg.registry.model_name, prompts, rate_per_s=2) as traffic:
            run_walkthrough(cfg, client, files, echo=click.echo)
            run_incident(cfg, client, echo=click.echo)
        answered = ", ".join(f"{n} by {v}" for v, n in sorted(traffic.versions.items()))
        click.echo(
            f"\nClient traffic on {router} during the demo: {traffic.counts['ok']} answered ({answered}), "
            f"{traffic.counts['failed']} failed."
        )
        click.echo(f"\nDemo finished in {(time.monotonic() - t0) / 60:.1f} min.")
    click.echo(f"  UI       {stack.airflow_url}/plugin/clm-overview   login: {creds[0]} / {creds[1]}")
    click.echo(f"  MLflow   {stack.mlflow_url}")
    click.echo("  stop     make down   (or: clm down)")


@cli.group("audit")
def audit_group() -> None:
    """The audit log: who changed what, when and why, in a hash chain that shows tampering."""


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check the audit log's hash chain; exit 1 naming the first entry that was edited, deleted or reordered."""
    from clm_lib import audit
    from clm_lib.db import session_scope
    from clm_lib.reporting.stores import missing_sqlite

    cfg = get_config()
    missing = missing_sqlite(cfg.database_url)
    if missing:
        raise ClmError(f"no clm database at {missing}: run `clm init` first")
    with session_scope(cfg.database_url) as s:
        result = audit.verify(s, audit.audit_key(cfg.home))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.message if result.ok else f"clm: audit chain broken: {result.message}", err=not result.ok)
    ctx.exit(0 if result.ok else 1)


@cli.group()
def drift() -> None:
    """Drift checks: what the clm_drift_monitor DAG runs, by hand or from another scheduler."""


@drift.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the whole decision as JSON.")
def drift_check(as_json: bool) -> None:
    """Compare the curated data since the last training with what it read; store the reports; say whether to
    retrain. A requested retraining starts when clm_retrain_watch is on, or by hand."""
    from clm_lib.drift.monitor import check_lake

    decision = check_lake(get_config())
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2, default=str))
        return
    for res in decision.results:
        click.echo(f"  {res.detector:<14} {res.status:<26} {res.explanation}")
    click.echo(f"check {decision.check_id}: {decision.summary}")


BENCHMARKS = {"drift": "drift.py", "continual": "continual.py", "rollback": "rollback.py", "ingest": "ingest.py",
              "train-throughput": "train_throughput.py", "architectures": "architectures.py"}  # fmt: skip


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(name: str, args: tuple[str, ...]) -> None:
    """Run a benchmark from bench/ (results go to bench/results/); arguments after NAME go to it (try --help)."""
    import importlib.util

    from clm_lib.config import REPO_ROOT

    path = REPO_ROOT / "bench" / BENCHMARKS[name]
    if not path.exists():
        raise ClmError(f"{path} is missing: benchmarks run from a clm source checkout")
    spec = importlib.util.spec_from_file_location(f"clm_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    sys.exit(module.main(list(args)))


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of shell exports.")
def env_cmd(as_json: bool) -> None:
    """Print the environment for `airflow` / `clm` commands against this stack: eval "$(clm env)"."""
    cfg = get_config()
    stack = processes.load_stack(cfg) or processes.plan_stack(cfg)
    full = airflow_home.airflow_env(cfg, mlflow_tracking_uri=stack.tracking_uri)
    keys = [
        "AIRFLOW_HOME",
        "AIRFLOW_CONFIG",
        "CLM_HOME",
        "CLM_CONFIG",
        "MLFLOW_TRACKING_URI",
        "PYTHONPATH",
        "AIRFLOW__API__HOST",
        "DS_ACCELERATOR",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ]
    chosen = {k: full[k] for k in keys} | {
        # So that commands reading cfg.server find the ports this stack really uses.
        "CLM__SERVER__AIRFLOW_PORT": str(stack.airflow_port),
        "CLM__SERVER__MLFLOW_PORT": str(stack.mlflow_port),
    }
    if as_json:
        click.echo(json.dumps(chosen, indent=2))
    else:
        for key, value in chosen.items():
            click.echo(f"export {key}={shlex.quote(value)}")


# Serving (clm_lib/serving/cli.py): clm serve, clm router, clm slots, clm keys, clm feedback.
for _command in (serving_cli.serve, serving_cli.router, serving_cli.slots, serving_cli.keys, serving_cli.feedback):
    cli.add_command(_command)

# One continual update from files, in-process or under the deepspeed launcher (clm_lib/training/train_cli.py).
cli.add_command(train_cli.train)
# Domain adaptation of the base on raw text (clm_lib/training/domain_cli.py): clm adapt-domain.
cli.add_command(domain_cli.adapt_domain_cmd)

# Promotion and rollback (clm_lib/deploy/commands.py): clm promote, clm rollback, clm deployments.
for _command in (deploy_cli.promote_cmd, deploy_cli.rollback_cmd, deploy_cli.deployments_cmd):
    cli.add_command(_command)
# After promotion (clm_lib/deploy/watch_commands.py): clm deploy reconcile, clm deploy guard.
cli.add_command(watch_commands.deploy_group)
# Configuration revisions (clm_lib/config_commands.py): clm config show, history, diff, set, revert.
cli.add_command(config_commands.config_group)
# Lake table versions and maintenance (clm_lib/data/commands.py): clm data history, diff, restore, optimize, vacuum.
cli.add_command(data_cli.data_group)
# Kafka ingestion outside Airflow (clm_lib/data/stream_commands.py): clm kafka send, clm kafka consume.
cli.add_command(stream_commands.kafka_group)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="clm")


if __name__ == "__main__":
    main()
