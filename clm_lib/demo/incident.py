"""The demo's incident: a bad version reaches the canary and is rolled back automatically; then an operator rolls
back by hand with ``clm rollback`` and undoes it the same way.

Like the walkthrough, this only acts as a user would: it registers the planted version, triggers
``clm_promotion`` through Airflow's REST API, runs the ``clm`` command line, and reads what happened from clm's
database.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field

from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment
from clm_lib.errors import ClmError
from clm_lib.services.airflow_client import AirflowClient


@dataclass
class Incident:
    planted_version: str
    promotion_status: str
    promotion_outcome: str
    champion_after_canary: str | None
    manual: list[str] = field(default_factory=list)
    """What each ``clm rollback`` printed."""
    champion_after_manual: list[str | None] = field(default_factory=list)


def _champion(cfg: ClmConfig) -> str | None:
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version

    return alias_version(cfg, CHAMPION)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    # Registering from this process would print MLflow's progress bars, run links and pyfunc warnings between
    # the demo's lines; the Airflow task that registers real candidates keeps them in its log instead.
    logger = logging.getLogger("mlflow")
    level, os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = logger.level, "false"
    logger.setLevel(logging.ERROR)
    try:
        # MLflow prints its run links and version notices itself, to stdout and stderr; an error still raises.
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def clm_rollback(reason: str, env: dict[str, str] | None = None, to: str | None = None) -> str:
    """Run ``clm rollback [--to VERSION] --reason ...`` as a person would; its output, or a ClmError with it."""
    target = ["--to", to] if to else []
    done = subprocess.run(
        [sys.executable, "-m", "clm_lib.cli", "rollback", *target, "--reason", reason],
        env=env or dict(os.environ), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise ClmError(f"clm rollback failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def run_incident(
    cfg: ClmConfig,
    client: AirflowClient,
    *,
    echo: Callable[[str], None] = print,
    env: dict[str, str] | None = None,
) -> Incident:
    from clm_lib.demo.planted import plant_bad_version

    champion = _champion(cfg)
    with _quiet_mlflow():
        version = plant_bad_version(cfg)
    echo(f"\nPlanted version {version}: champion {champion}'s adapter, scrambled after its evaluation was copied.")
    echo("  Its stored evaluation passes the gate; only serving it shows that it answers wrongly.")
    run_id = client.trigger("clm_promotion", {"version": version, "reason": "demo: planted bad version"})
    client.wait_for_run("clm_promotion", run_id, timeout=600)
    with session_scope(cfg.database_url) as s:
        dep = s.scalars(
            select(Deployment).where(Deployment.kind == "promotion", Deployment.version == version)
            .order_by(Deployment.id.desc())
        ).first()  # fmt: skip
        if dep is None:
            raise ClmError(f"clm_promotion run {run_id} recorded no deployment of version {version}")
        status, outcome = dep.status, dep.outcome
    incident = Incident(version, status, outcome, _champion(cfg))
    echo(f"  clm_promotion: {status.replace('_', ' ')}: {outcome}")
    echo(f"  champion is still {incident.champion_after_canary}")
    # The undo names its version: a default rollback never returns to a version that was just rolled back.
    for reason, to in (("demo: an operator rolls back by hand", None), ("demo: and undoes it", champion)):
        echo(f"\n$ clm rollback {f'--to {to} ' if to else ''}--reason '{reason}'")
        out = clm_rollback(reason, env, to)
        echo("  " + out.replace("\n", "\n  "))
        incident.manual.append(out)
        incident.champion_after_manual.append(_champion(cfg))
    return incident
