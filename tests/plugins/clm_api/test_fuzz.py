"""Fuzzing clm's REST API with schemathesis, as Airflow's api-server serves it (the real ``create_app`` with the
plugin loaded, over real HTTP on loopback), as every FAB role: cases generated from the API's own schema (which
it does not publish: ``/openapi.json`` would answer anonymously, so the schema comes from ``app.openapi()``),
valid and invalid. Whatever arrives, the answer is never a 5xx. Bounded and derandomized.

Rollbacks the fuzzer's allowed users send really happen (``deploy.strategy: alias``), between the two versions
of a real MLflow registry. The inputs that once answered 500 are pinned below as plain regression tests."""

from __future__ import annotations

import shutil
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.clm_lib.serving.helpers import running

API = "/clm/api"
ROLES = {"anonymous": None, "public": "pat", "viewer": "vic", "user": "uma", "operator": "otto", "admin": "ada"}
EXAMPLES = 100
"""Cases per role (positive and negative mixed, over every route): ~8 s per role on 2 cores."""
CASES: Counter[str] = Counter()
NO_SHRINK = (Phase.explicit, Phase.generate)
"""A failure is reported as found: shrinking it could take minutes, past the run's time bound."""


@pytest.fixture(scope="module")
def served(airflow_fab, tokens, tmp_path_factory, _mlflow_template):
    """The api-server on loopback; clm's DB and a registry where versions 1 then 2 were promoted (``alias``
    strategy), so that allowed rollbacks succeed and the deployment history has rows to read."""
    from airflow.api_fastapi.app import create_app
    from clm_api.app import create_app as create_clm_api

    from clm_lib.config import load_config
    from clm_lib.db import upgrade
    from clm_lib.deploy.rollout import rollout

    root = tmp_path_factory.mktemp("rest-fuzz")
    shutil.copy(_mlflow_template, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLM_DATABASE_URL", f"sqlite:///{root / 'clm.db'}")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("CLM__DEPLOY__STRATEGY", "alias")
        cfg = load_config()
        upgrade(cfg.database_url)
        for _ in range(2):
            _register(cfg)
            rollout(cfg)
        schema = schemathesis.openapi.from_dict(create_clm_api().openapi())
        with running(create_app(apps="core")) as url:
            yield {"url": url, "schema": schema, "cfg": cfg, "tokens": tokens}


def _register(cfg) -> str:
    """A registered version with a passing evaluation, as the ``register_version`` fixture (function-scoped) makes."""
    from clm_lib.db import session_scope
    from clm_lib.db.models import Evaluation, TrainingRun
    from clm_lib.registry.aliases import CHALLENGER
    from clm_lib.registry.mlflow_registry import client, move_alias

    c, name = client(cfg), cfg.registry.model_name
    if not c.search_registered_models(filter_string=f"name='{name}'"):
        c.create_registered_model(name)
    version = str(c.create_model_version(name, source="file:///nowhere").version)
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id=f"run-{version}", status="succeeded", base_model="b", config_hash="h",
                          model_version=version, tasks=["routers"]))  # fmt: skip
        s.flush()
        s.add(Evaluation(training_run_id=f"run-{version}", model_version=version, tasks=["routers"],
                         scores={"routers": 90.0}, matrix=[[90.0]], average_accuracy=90.0))  # fmt: skip
        move_alias(cfg, s, CHALLENGER, version, actor="test", reason="candidate")
    return version


def _headers(served, role: str) -> dict[str, str]:
    user = ROLES[role]
    return {"Authorization": f"Bearer {served['tokens'][user]}"} if user else {}


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_no_5xx_for_any_role(served, role):
    schema = served["schema"]
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE) | schema.as_strategy(
        generation_mode=schemathesis.GenerationMode.NEGATIVE
    )
    headers = _headers(served, role)
    session = requests.Session()
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def check(case):
        response = case.call(base_url=served["url"] + API, session=session, headers=headers, timeout=60)
        CASES[role] += 1
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    check()
    print(f"REST API as {role}: {CASES[role]} cases, statuses {dict(sorted(statuses.items()))}")
    assert CASES[role] >= EXAMPLES
    assert not [s for s in statuses if s >= 500], statuses
    if role == "anonymous":
        # 403: a token the fuzzer made up (Airflow's answer to one it cannot validate). 400/422: a body that is not
        # UTF-8 / not JSON, which FastAPI refuses before any dependency runs (nothing read, nothing changed).
        assert set(statuses) <= {400, 401, 403, 404, 405, 422}, statuses
    elif role == "public":
        assert set(statuses) <= {400, 403, 404, 405, 422}, statuses
    else:
        assert 200 in statuses, statuses


def test_regression_a_deployment_id_beyond_64_bits_was_a_500(served):
    headers = _headers(served, "viewer")
    for deployment_id in (2**63, 2**64 + 1, -(2**63) - 1, 10**40):
        response = httpx.get(f"{served['url']}{API}/deployments/{deployment_id}", headers=headers)

        assert response.status_code in (404, 422), (deployment_id, response.status_code, response.text[:300])


def test_regression_a_huge_invalid_reason_is_not_echoed_whole(served):
    from clm_lib.registry.mlflow_registry import alias_version

    champion = alias_version(served["cfg"], "champion")
    reason = "x" * 5_000_000
    response = httpx.post(f"{served['url']}{API}/rollback", json={"reason": reason},
                          headers=_headers(served, "operator"), timeout=60)  # fmt: skip

    assert response.status_code == 422
    assert "reason" in response.text
    assert len(response.content) < 10_000, f"the 422 is {len(response.content)} bytes long"
    assert alias_version(served["cfg"], "champion") == champion
