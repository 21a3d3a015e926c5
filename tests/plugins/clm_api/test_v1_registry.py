"""``/clm/api/v1/models``, ``/models/{version}``, ``/models/{version}/lineage``, ``/models/compare``, ``/aliases``
and ``/aliases/history`` as Airflow's api-server mounts them, with the FAB auth manager and real users."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.registry_history import HOSTILE, register_in_mlflow, seed_lineage
from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"
ROUTES = ["/models", "/models/2", "/models/2/lineage", "/models/compare?a=1&b=2", "/aliases", "/aliases/history"]


@pytest.fixture
def registered(airflow_fab, tmp_path, mlflow_uri, monkeypatch):
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_lineage(url)
    register_in_mlflow(mlflow_uri)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)


@pytest.mark.parametrize("path", ROUTES)
def test_anonymous_is_401_public_403(api, tokens, path):
    assert api.get(V1 + path).status_code == 401
    assert api.get(V1 + path, headers=bearer(tokens, "pat")).status_code == 403


def test_models_paged_newest_first(api, tokens, registered):
    everything = api.get(f"{V1}/models", headers=bearer(tokens, "vic")).json()
    second = api.get(f"{V1}/models", params={"offset": 1, "limit": 1}, headers=bearer(tokens, "vic")).json()

    assert (everything["total"], [v["version"] for v in everything["items"]]) == (3, ["3", "2", "1"])
    assert everything["registry_status"] == "ok"
    v2 = everything["items"][1]
    assert v2["aliases"] == ["champion"] and v2["run"]["config_hash"] == "cfg-b"
    assert (v2["run"]["parent_model_version"], v2["run"]["curated_version"], v2["run"]["replay_version"]) == ("1", 3, 4)
    assert v2["params"]["strategy.ewc.lambda"] == 10.0 and v2["scores"]["billing"] == 90.5
    assert v2["gate"]["passed"] is True and v2["gate"]["champion_version"] == "1"
    assert [v["version"] for v in second["items"]] == ["2"] and second["total"] == 3


def test_one_model_and_its_lineage(api, tokens, registered):
    one = api.get(f"{V1}/models/1", headers=bearer(tokens, "vic"))
    graph = api.get(f"{V1}/models/2/lineage", headers=bearer(tokens, "vic")).json()

    assert one.status_code == 200 and one.json()["aliases"] == ["previous"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert {"batch:b-2", "batch:b-3", "curated:2", "curated:3", "replay:4", "parent:1", "run:tr-2", "model:2",
            "deployment:2", "deployment:3"} == set(nodes)  # fmt: skip
    assert nodes["batch:b-3"]["label"] == HOSTILE  # data, as it is: escaping is the reader's job
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert {("batch:b-2", "curated:2"), ("curated:2", "run:tr-2"), ("run:tr-2", "model:2"),
            ("model:2", "deployment:3")} <= edges  # fmt: skip
    assert graph["training_run_id"] == "tr-2" and graph["omitted"] == {}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/models/4242", 404), ("/models/4242/lineage", 404), ("/models/compare?a=1&b=4242", 404),
        ("/models/abc", 422), ("/models/" + "9" * 40, 422), ("/models/compare?a=1", 422),
        ("/aliases/history?alias=%3Cb%3E", 422), ("/aliases/history?actor=" + "x" * 300, 422),
    ],
)
def test_unknown_versions_are_404_and_bad_arguments_422(api, tokens, registered, path, status):
    response = api.get(V1 + path, headers=bearer(tokens, "vic"))

    assert response.status_code == status, response.text[:300]
    if status == 404:
        assert "no model version 4242" in response.json()["detail"]


def test_compare(api, tokens, registered):
    c = api.get(f"{V1}/models/compare", params={"a": "1", "b": "2"}, headers=bearer(tokens, "vic")).json()

    assert [(t["task"], t["delta"]) for t in c["tasks"]] == [("routers", -3.0), ("billing", None),
                                                             ("thermostats", None)]  # fmt: skip
    changes = {ch["key"]: ch for ch in c["config"]}
    assert (changes["training.learning_rate"]["a"], changes["training.learning_rate"]["b"]) == (0.001, 0.0005)
    assert changes["training.ewc_lambda"]["only_in"] == "b"
    assert "hunter2" not in str(c)


def test_aliases_and_their_history(api, tokens, registered):
    now = api.get(f"{V1}/aliases", headers=bearer(tokens, "vic")).json()
    history = api.get(f"{V1}/aliases/history", params={"alias": "champion"}, headers=bearer(tokens, "vic")).json()
    paged = api.get(f"{V1}/aliases/history", params={"actor": "otto", "limit": 1, "offset": 1},
                    headers=bearer(tokens, "vic")).json()  # fmt: skip

    assert [(a["alias"], a["version"], a["agrees"]) for a in now] == [
        ("champion", "2", True), ("previous", "1", True), ("challenger", "3", False)
    ]  # fmt: skip
    assert [(m["from_version"], m["to_version"], m["actor"]) for m in history["items"]] == [
        ("1", "2", "airflow:Otto"), (None, "1", "airflow:ada")
    ]  # fmt: skip
    assert history["total"] == 2 and history["alias"] == "champion"
    assert (paged["total"], [m["alias"] for m in paged["items"]]) == (3, ["previous"])


def test_a_database_that_cannot_be_read_is_a_503(api, tokens, airflow_fab, tmp_path, monkeypatch):
    broken = tmp_path / "clm.db"
    broken.write_text("not a database")
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{broken}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")

    response = api.get(f"{V1}/models", headers=bearer(tokens, "vic"))

    assert response.status_code == 503 and "clm's database cannot be read" in response.json()["detail"]
