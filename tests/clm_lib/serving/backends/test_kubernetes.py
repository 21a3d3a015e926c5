"""The ``kubernetes`` backend WITHOUT a cluster: none runs on the development machines or in CI.

What is checked instead: (1) the manifests rendered from ``include/k8s/`` parse, deserialize into the kubernetes
client's own models, and agree with each other (selectors, labels, ports, probes, config); (2) the exact calls the
backend makes on ``AppsV1Api`` / ``CoreV1Api``, against an in-memory stand-in for the API server wrapped in mocks
specced on the real client classes (a misspelt method fails); (3) its Prometheus queries and smoke test, against
``httpx.MockTransport``. Whether a real cluster then routes traffic as intended is not tested here.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from unittest.mock import MagicMock
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from clm_lib.config import load_config
from clm_lib.errors import ServingError
from clm_lib.serving.backends import get_backend, manifests

NS = "ml-serving"


@pytest.fixture
def cfg(tmp_path):
    return load_config(
        environ={
            "CLM_HOME": str(tmp_path),
            "CLM__SERVING__BACKEND": "kubernetes",
            "CLM__SERVING__KUBERNETES__NAMESPACE": NS,
            "CLM__SERVING__KUBERNETES__REPLICAS": "4",
            "CLM__SERVING__KUBERNETES__PROMETHEUS_URL": "http://prometheus.monitoring:9090",
            "CLM__SERVING__KUBERNETES__IMAGE": 'registry.local:5000/clm:1.0 "quoted"',
        }
    )


def _as(kind: str, body: dict):
    """Deserialize a manifest into the kubernetes client's model, as the API server's answer would be."""
    return ApiClient().deserialize(SimpleNamespace(data=json.dumps(body)), kind)


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- (1) manifests ------------------------------------------------------------------------------------------
def test_rendered_manifests_are_valid_and_consistent(cfg, tmp_path):
    config_map, sha = manifests.config_map(cfg)
    deps = {s: manifests.deployment(cfg, s, v, sha) for s, v in (("blue", "6"), ("green", "7"))}
    own = {s: manifests.service(cfg, slot=s) for s in ("blue", "green")}
    live = manifests.service(cfg, slot="blue", weights={"blue": 100, "green": 0})
    canary = manifests.service(cfg, slot=None, weights={"blue": 90, "green": 10})
    everything = [config_map, *deps.values(), *own.values(), live, canary]

    objects = yaml.safe_dump_all([o for o in everything if o is not config_map])
    assert "127.0.0.1" not in objects and "localhost" not in objects
    assert {(o["apiVersion"], o["kind"]) for o in everything} == {("v1", "ConfigMap"), ("apps/v1", "Deployment"),
                                                                  ("v1", "Service")}  # fmt: skip
    assert all(o["metadata"]["namespace"] == NS for o in everything)
    assert _as("V1ConfigMap", config_map).data["clm.yaml"]

    for slot, dep in deps.items():
        model = _as("V1Deployment", dep)
        pod_labels = model.spec.template.metadata.labels
        assert model.metadata.name == f"clm-serving-{slot}" and model.spec.replicas == 4
        assert model.spec.selector.match_labels == {"app.kubernetes.io/name": "clm-serving", "clm.io/slot": slot}
        assert _matches(model.spec.selector.match_labels, pod_labels)
        assert pod_labels["clm.io/model-version"] == {"blue": "6", "green": "7"}[slot]
        (container,) = model.spec.template.spec.containers
        assert container.image == 'registry.local:5000/clm:1.0 "quoted"'  # quoting cannot break the YAML
        assert container.args == ["serve", "--version", pod_labels["clm.io/model-version"], "--slot", slot,
                                  "--port", "8000", "--host", "0.0.0.0"]  # fmt: skip
        assert [(p.name, p.container_port) for p in container.ports] == [("http", 8000)]
        for probe in (container.startup_probe, container.readiness_probe, container.liveness_probe):
            assert (probe.http_get.path, probe.http_get.port) == ("/healthz", "http")
        assert container.env_from[0].secret_ref.name == "clm-serving-env"
        env = {e.name: e.value for e in container.env}
        assert env["CLM_CONFIG"] == "/etc/clm/clm.yaml" and env["HF_HUB_OFFLINE"] == "1"
        assert {m.mount_path for m in container.volume_mounts} == {"/etc/clm", "/var/lib/clm"}
        assert model.spec.template.spec.volumes[0].config_map.name == config_map["metadata"]["name"]
        assert model.spec.template.metadata.annotations["clm.io/config-sha256"] == sha
        assert model.spec.template.spec.termination_grace_period_seconds > cfg.serving.drain_timeout_s

    pods = {s: d["spec"]["template"]["metadata"]["labels"] for s, d in deps.items()}
    for slot, svc in own.items():
        model = _as("V1Service", svc)
        assert model.metadata.name == f"clm-serving-{slot}"
        assert [s for s in pods if _matches(model.spec.selector, pods[s])] == [slot]
        assert model.spec.ports[0].target_port == "http"
    assert [s for s in pods if _matches(live["spec"]["selector"], pods[s])] == ["blue"]
    assert [s for s in pods if _matches(canary["spec"]["selector"], pods[s])] == ["blue", "green"]
    assert manifests.parse_weights(canary["metadata"]["annotations"]["clm.io/weights"]) == {"blue": 90, "green": 10}

    # The pods run with the deployer's settings: the ConfigMap is a config clm itself loads.
    (tmp_path / "clm.yaml").write_text(config_map["data"]["clm.yaml"])
    pod_cfg = load_config(tmp_path / "clm.yaml", environ={})
    assert pod_cfg.serving.host == "0.0.0.0"
    assert pod_cfg.serving.model_dump(exclude={"host"}) == cfg.serving.model_dump(exclude={"host"})
    assert pod_cfg.registry == cfg.registry and pod_cfg.data == cfg.data


def test_no_env_secret_means_no_env_from(cfg):
    cfg.serving.kubernetes.env_secret = None
    container = manifests.deployment(cfg, "blue", "1", "x")["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in container


# --- (2) API calls ------------------------------------------------------------------------------------------
class FakeApiServer:
    """Just enough of an API server: objects by (kind, name), every call recorded as (method, name)."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, str]] = []

    def _get(self, method: str, kind: str, model: str, name: str, ns: str):
        assert ns == NS
        self.calls.append((method, name))
        if (kind, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return _as(model, self.objects[(kind, name)])

    def _put(self, method: str, kind: str, ns: str, body: dict):
        assert ns == NS
        self.calls.append((method, body["metadata"]["name"]))
        self.objects[(kind, body["metadata"]["name"])] = copy.deepcopy(body)

    def _patch(self, method: str, kind: str, name: str, ns: str, body: dict):
        assert ns == NS
        self.calls.append((method, name))
        _merge(self.objects[(kind, name)], body)

    # CoreV1Api
    def read_namespaced_service(self, name, ns):
        return self._get("read_namespaced_service", "Service", "V1Service", name, ns)

    def create_namespaced_service(self, ns, body):
        self._put("create_namespaced_service", "Service", ns, body)

    def patch_namespaced_service(self, name, ns, body):
        self._patch("patch_namespaced_service", "Service", name, ns, body)

    def read_namespaced_config_map(self, name, ns):
        return self._get("read_namespaced_config_map", "ConfigMap", "V1ConfigMap", name, ns)

    def create_namespaced_config_map(self, ns, body):
        self._put("create_namespaced_config_map", "ConfigMap", ns, body)

    def patch_namespaced_config_map(self, name, ns, body):
        self._patch("patch_namespaced_config_map", "ConfigMap", name, ns, body)

    def list_namespaced_pod(self, ns, label_selector):
        self.calls.append(("list_namespaced_pod", label_selector))
        slot = dict(kv.split("=") for kv in label_selector.split(","))["clm.io/slot"]
        replicas = self.objects[("Deployment", f"clm-serving-{slot}")]["spec"]["replicas"]
        return SimpleNamespace(
            items=[SimpleNamespace(metadata=SimpleNamespace(name=f"{slot}-{i}")) for i in range(replicas)]
        )

    # AppsV1Api
    def read_namespaced_deployment(self, name, ns):
        return self._get("read_namespaced_deployment", "Deployment", "V1Deployment", name, ns)

    def read_namespaced_deployment_status(self, name, ns):
        dep = self._get("read_namespaced_deployment_status", "Deployment", "V1Deployment", name, ns)
        n = dep.spec.replicas
        dep.metadata.generation = 1
        dep.status = _as("V1DeploymentStatus", {"observedGeneration": 1, "replicas": n, "readyReplicas": n,
                                                "updatedReplicas": n})  # fmt: skip
        return dep

    def create_namespaced_deployment(self, ns, body):
        self._put("create_namespaced_deployment", "Deployment", ns, body)

    def patch_namespaced_deployment(self, name, ns, body):
        self._patch("patch_namespaced_deployment", "Deployment", name, ns, body)

    def patch_namespaced_deployment_scale(self, name, ns, body):
        self._patch("patch_namespaced_deployment_scale", "Deployment", name, ns, body)


def _merge(target: dict, patch: dict) -> None:
    """Strategic-merge semantics for maps: nested merge, null deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@pytest.fixture
def cluster(cfg):
    server = FakeApiServer()
    apps = MagicMock(spec=AppsV1Api, wraps=server)
    core = MagicMock(spec=CoreV1Api, wraps=server)
    backend = get_backend(cfg, apps=apps, core=core)
    return SimpleNamespace(server=server, backend=backend, apps=apps, core=core)


def test_deploy_into_an_empty_cluster_creates_everything(cluster):
    st = cluster.backend.deploy("blue", "6")
    creates = [c for c in cluster.server.calls if c[0].startswith(("create", "patch"))]
    assert creates == [
        ("create_namespaced_config_map", "clm-serving-config"),
        ("create_namespaced_deployment", "clm-serving-blue"),
        ("create_namespaced_service", "clm-serving-blue"),
        ("create_namespaced_service", "clm-serving"),  # the first deploy takes the traffic
    ]
    svc = cluster.server.objects[("Service", "clm-serving")]
    assert svc["spec"]["selector"]["clm.io/slot"] == "blue"
    assert (st.version, st.healthy, st.weight, st.pods) == ("6", True, 100, ["blue-0", "blue-1", "blue-2", "blue-3"])
    assert st.url == f"http://clm-serving-blue.{NS}.svc.cluster.local:80"


def test_second_deploy_patches_and_leaves_traffic_alone(cluster):
    b = cluster.backend
    b.deploy("blue", "6")
    b.deploy("green", "7")
    cluster.server.calls.clear()
    b.deploy("green", "8")  # a redeploy of the idle slot patches what exists
    writes = [c for c in cluster.server.calls if c[0].startswith(("create", "patch"))]
    assert writes == [
        ("patch_namespaced_config_map", "clm-serving-config"),
        ("patch_namespaced_deployment", "clm-serving-green"),
        ("patch_namespaced_service", "clm-serving-green"),
    ]
    assert b.weights() == {"blue": 100, "green": 0}
    assert b.status()["green"].version == "8"
    with pytest.raises(ServingError, match="carries 100% of traffic"):
        b.deploy("blue", "9")


def test_canary_is_a_replica_ratio_and_blue_green_a_selector_patch(cluster):
    b, server = cluster.backend, cluster.server
    b.deploy("blue", "6")
    b.deploy("green", "7")
    server.calls.clear()
    b.set_weights({"blue": 90, "green": 10})
    assert [c for c in server.calls if c[0].startswith("patch")] == [
        ("patch_namespaced_deployment_scale", "clm-serving-blue"),
        ("patch_namespaced_deployment_scale", "clm-serving-green"),
        ("patch_namespaced_service", "clm-serving"),
    ]
    cluster.core.patch_namespaced_service.assert_called_with(
        "clm-serving",
        NS,
        {
            "metadata": {"annotations": {"clm.io/weights": "blue=90,green=10"}},
            "spec": {"selector": {"clm.io/slot": None, "app.kubernetes.io/name": "clm-serving"}},
        },
    )
    assert [server.objects[("Deployment", f"clm-serving-{s}")]["spec"]["replicas"] for s in ("blue", "green")] == [4, 1]
    assert "clm.io/slot" not in server.objects[("Service", "clm-serving")]["spec"]["selector"]
    assert b.weights() == {"blue": 90, "green": 10}

    server.calls.clear()
    b.set_weights({"blue": 0, "green": 100})
    writes = [c for c in server.calls if c[0].startswith("patch")]
    assert writes == [
        ("patch_namespaced_deployment_scale", "clm-serving-green"),  # full size before it takes everything
        ("patch_namespaced_service", "clm-serving"),
        ("patch_namespaced_deployment_scale", "clm-serving-blue"),  # the warm standby
    ]
    assert server.objects[("Service", "clm-serving")]["spec"]["selector"]["clm.io/slot"] == "green"
    assert {s: st.weight for s, st in b.status().items()} == {"blue": 0, "green": 100}


def test_stop_scales_to_zero_and_refuses_a_live_slot(cluster):
    b = cluster.backend
    b.deploy("blue", "6")
    b.deploy("green", "7")
    with pytest.raises(ServingError, match="shift it to green first"):
        b.stop("blue")
    b.stop("green")
    cluster.apps.patch_namespaced_deployment_scale.assert_called_with(
        "clm-serving-green", NS, {"spec": {"replicas": 0}}
    )
    st = b.status()["green"]
    assert not st.healthy and st.detail == "stopped (0 replicas)"
    with pytest.raises(ServingError, match="no ready pod"):
        b.set_weights({"blue": 50, "green": 50})


def test_set_weights_before_any_deploy_is_refused(cluster):
    with pytest.raises(ServingError, match="deploy a slot first"):
        cluster.backend.set_weights({"blue": 100})
    assert cluster.backend.weights() == {"blue": 0, "green": 0}


# --- (3) Prometheus and the smoke test ------------------------------------------------------------------------
def test_live_metrics_query_prometheus_by_slot_and_version(cfg):
    queries = []
    values = {"clm_serving_requests_total": "200", "clm_serving_errors_total": "3",
              "histogram_quantile": "412.5", "_count": "4", "_sum": "3"}  # fmt: skip

    def prometheus(request: httpx.Request) -> httpx.Response:
        assert urlparse(str(request.url)).path == "/api/v1/query"
        query = parse_qs(urlparse(str(request.url)).query)["query"][0]
        queries.append(query)
        value = next(v for key, v in values.items() if key in query)
        return httpx.Response(200, json={"status": "success", "data": {"result": [{"value": [0, value]}]}})

    server = FakeApiServer()
    http = httpx.Client(transport=httpx.MockTransport(prometheus))
    b = get_backend(cfg, apps=MagicMock(spec=AppsV1Api, wraps=server), core=MagicMock(spec=CoreV1Api, wraps=server),
                    http=http)  # fmt: skip
    b.deploy("blue", "6")
    b.deploy("green", "7")
    import time

    m = b.live_metrics("green", time.time() - 60)
    assert (m.requests, m.errors, m.p95_ms, m.feedback_count, m.feedback_mean) == (200, 3, 412.5, 4, 0.75)
    assert m.error_rate == 0.015
    assert all('slot="green",version="7"' in q for q in queries)
    assert any('type="server"' in q for q in queries)
    assert all("[60s]" in q or "[61s]" in q for q in queries)


def test_live_metrics_without_prometheus_say_so(cfg):
    cfg.serving.kubernetes.prometheus_url = None
    server = FakeApiServer()
    b = get_backend(cfg, apps=MagicMock(spec=AppsV1Api, wraps=server), core=MagicMock(spec=CoreV1Api, wraps=server))
    with pytest.raises(ServingError, match="prometheus_url"):
        b.live_metrics("blue", 0)


def test_smoke_test_calls_the_slot_service(cfg):
    seen = []

    def slot(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = json.loads(request.content)
        return httpx.Response(200, json={"model": f"{body['model']}/7", "choices": [{"text": "billing"}]})

    server = FakeApiServer()
    http = httpx.Client(transport=httpx.MockTransport(slot))
    b = get_backend(cfg, apps=MagicMock(spec=AppsV1Api, wraps=server), core=MagicMock(spec=CoreV1Api, wraps=server),
                    http=http)  # fmt: skip
    b.deploy("blue", "6")
    b.deploy("green", "7")
    b.smoke_test("green")
    assert seen == [f"http://clm-serving-green.{NS}.svc.cluster.local/v1/completions"]  # :80 is the default
    with pytest.raises(ServingError, match="expected clm-assistant/6"):
        b.smoke_test("blue")
