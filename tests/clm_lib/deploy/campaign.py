"""What the fault campaign's processes run (``test_deploy_faults.py``): the clm_promotion DAG's tasks in order, as
Airflow runs them (the gate's deployment id handed on through a file, as XCom hands it on), or the rollback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

LEASE_S = 1.0
"""The campaign's deploy-lock lease: a killed holder's lock frees within a second (set after loading the config,
below its floor, since the fake backend's calls take milliseconds)."""


def promotion_tasks(cfg, be, xcom: Path) -> str:
    """gate -> deploy -> canary -> promote; a task whose deployment is already past it does nothing."""
    from clm_lib.deploy.rollout import canary, complete, deploy, start

    if not xcom.exists():  # the gate task died before its XCom was pushed: Airflow runs it again
        xcom.write_text(str(start(cfg, actor="airflow:clm_promotion", reason="gate passed")))
    deployment_id = int(xcom.read_text())
    deploy(cfg, deployment_id, backend=be)
    canary(cfg, deployment_id, backend=be, golden=None)
    return complete(cfg, deployment_id, backend=be)


def main() -> None:
    from clm_lib.config import load_config
    from clm_lib.deploy.rollback import rollback

    from .filebackend import FileBackend

    cfg = load_config()
    cfg.deploy.lock_lease_seconds = LEASE_S
    be = FileBackend(os.environ["CLM_TEST_BACKEND_FILE"])
    if sys.argv[1] == "promote":
        promotion_tasks(cfg, be, Path(sys.argv[2]))
    else:
        rollback(cfg, actor="airflow:otto", reason="campaign", backend=be)


if __name__ == "__main__":
    main()
