"""What the REST API's tests share: the api-server app as Airflow builds it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def api(airflow_fab):
    """A client of Airflow's real api-server app (``create_app``), which mounts clm's API at ``/clm/api``."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client
