"""The ``kubernetes`` backend: a Deployment per slot, and a Service whose selector does the switching.

- **Blue-green**: the clients' Service selects the live slot's pods (``clm.io/slot: blue``); a switch is one patch
  of its selector, which the API server applies atomically. Both Deployments keep ``replicas`` pods, so the old
  slot stays warm for a rollback, and each pod drains before it stops (``preStop`` pause, then uvicorn's graceful
  shutdown).
- **Canary**: the Service selects both slots and Kubernetes spreads connections over all their ready pods, so the
  weights become a **replica ratio**: the heavier slot keeps ``replicas`` pods and the other gets
  ``max(1, round(replicas * w_small / w_large))``. The finest step is therefore about 1 / (replicas + 1); Argo
  Rollouts makes the same trade-off without a mesh. For exact percentages put a mesh or an ingress that splits
  by weight in front of the two slot Services (``<name>-blue``/``-green``), which exist for that and for smoke tests.
- The requested weights live in the ``clm.io/weights`` annotation of the Service, the one place every caller reads.
- **Live metrics** come from a Prometheus that scrapes the pods (``serving.kubernetes.prometheus_url``), filtered by
  slot *and* version, so a window never mixes in the version the slot served before.

Every call goes through the official ``kubernetes`` client (``AppsV1Api``/``CoreV1Api``, in-cluster config or
kubeconfig); tests pass mocks of both and check the exact calls (no cluster runs on the development machines).
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from clm_lib.config import ClmConfig
from clm_lib.errors import ServingError
from clm_lib.serving.backends import manifests, register_backend
from clm_lib.serving.backends.base import (
    SLOTS,
    ServingBackend,
    SlotMetrics,
    SlotStatus,
    check_slot,
    check_weights,
    other_slot,
)
from clm_lib.serving.backends.probe import smoke


def _api_clients() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise ServingError(f"no Kubernetes configuration (in-cluster or kubeconfig): {exc}") from None
    return client.AppsV1Api(), client.CoreV1Api()


def _missing(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


class KubernetesBackend(ServingBackend):
    def __init__(self, cfg: ClmConfig, *, apps=None, core=None, http: httpx.Client | None = None):
        self.cfg = cfg
        self.k = cfg.serving.kubernetes
        if apps is None or core is None:
            apps, core = _api_clients()
        self.apps, self.core = apps, core
        self.http = http or httpx.Client(timeout=10.0)

    def _name(self, slot: str) -> str:
        return f"{self.k.name}-{slot}"

    def _upsert(self, read, create, patch, name: str, body: dict) -> None:
        """Create the object, or patch it into shape if it exists."""
        from kubernetes.client.exceptions import ApiException

        try:
            read(name, self.k.namespace)
        except ApiException as exc:
            if not _missing(exc):
                raise ServingError(f"Kubernetes refused reading {name}: {exc.status} {exc.reason}") from None
            create(self.k.namespace, body)
            return
        patch(name, self.k.namespace, body)

    def _service(self):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_service(self.k.name, self.k.namespace)
        except ApiException as exc:
            if _missing(exc):
                return None
            raise ServingError(f"Kubernetes refused reading service {self.k.name}: {exc.status}") from None

    def _deployment(self, slot: str):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.apps.read_namespaced_deployment_status(self._name(slot), self.k.namespace)
        except ApiException as exc:
            if _missing(exc):
                return None
            raise ServingError(f"Kubernetes refused reading deployment {self._name(slot)}: {exc.status}") from None

    # --- the interface -----------------------------------------------------------------------------------
    def deploy(self, slot: str, model_version: str) -> SlotStatus:
        check_slot(slot)
        if not str(model_version).isdigit():
            raise ServingError(f"a model version is a number, got {model_version!r}")
        weight = self.weights()[slot]
        if weight > 0:
            raise ServingError(f"slot {slot} carries {weight}% of traffic; deploy into {other_slot(slot)} first")
        config_map, sha = manifests.config_map(self.cfg)
        core, apps = self.core, self.apps
        self._upsert(
            core.read_namespaced_config_map, core.create_namespaced_config_map, core.patch_namespaced_config_map,
            f"{self.k.name}-config", config_map,
        )  # fmt: skip
        self._upsert(
            apps.read_namespaced_deployment, apps.create_namespaced_deployment, apps.patch_namespaced_deployment,
            self._name(slot), manifests.deployment(self.cfg, slot, str(model_version), sha),
        )  # fmt: skip
        self._upsert(
            core.read_namespaced_service, core.create_namespaced_service, core.patch_namespaced_service,
            self._name(slot), manifests.service(self.cfg, slot=slot),
        )  # fmt: skip
        if self._service() is None:
            # The first slot deployed takes the traffic: there was nothing to protect.
            weights = {slot: 100, other_slot(slot): 0}
            core.create_namespaced_service(self.k.namespace, manifests.service(self.cfg, slot=slot, weights=weights))
        self._wait_ready(slot, str(model_version))
        return self.status()[slot]

    def _wait_ready(self, slot: str, version: str | None = None) -> None:
        """Until every pod of ``slot`` (running ``version``, if given) is ready."""
        deadline = time.monotonic() + self.k.ready_timeout_s
        while True:
            dep = self._deployment(slot)
            running = dep.metadata.labels.get(manifests.VERSION_LABEL) if dep is not None else None
            if dep is not None and _rolled_out(dep) and version in (None, running):
                return
            if time.monotonic() > deadline:
                raise ServingError(
                    f"slot {slot} (version {version or 'any'}) not ready after {self.k.ready_timeout_s:.0f} s; "
                    f"see `kubectl -n {self.k.namespace} describe deployment {self._name(slot)}`"
                )
            time.sleep(2.0)

    def set_weights(self, weights: dict[str, int]) -> None:
        weights = check_weights(weights)
        if self._service() is None:
            raise ServingError(f"service {self.k.name} does not exist: deploy a slot first")
        for slot, w in weights.items():
            dep = self._deployment(slot) if w > 0 else None
            if w > 0 and (dep is None or not (dep.status.ready_replicas or 0)):
                raise ServingError(f"slot {slot} has no ready pod; it cannot take {w}% of traffic")
        live = [s for s, w in weights.items() if w == 100]
        if live:
            # Blue-green: the target is brought to full size first (a canary may run on one pod), then one selector
            # patch moves all traffic, then the other slot is brought back to full size: a warm standby.
            self._scale(live[0], self.k.replicas)
            self._wait_ready(live[0])
            self._patch_service(live[0], weights)
            self._scale(other_slot(live[0]), self.k.replicas)
            return
        heavy = max(SLOTS, key=lambda s: weights[s])
        light = other_slot(heavy)
        self._scale(heavy, self.k.replicas)
        self._scale(light, max(1, round(self.k.replicas * weights[light] / weights[heavy])))
        self._patch_service(None, weights)

    def _patch_service(self, slot: str | None, weights: dict[str, int]) -> None:
        # A strategic merge patch merges selector maps, so leaving the slot out needs an explicit null.
        sel: dict[str, str | None] = {manifests.SLOT_LABEL: slot, **manifests.selector(self.cfg)}
        body = {
            "metadata": {"annotations": {manifests.WEIGHTS_ANNOTATION: manifests.weights_text(weights)}},
            "spec": {"selector": sel},
        }
        self.core.patch_namespaced_service(self.k.name, self.k.namespace, body)

    def _scale(self, slot: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(
            self._name(slot), self.k.namespace, {"spec": {"replicas": replicas}}
        )

    def weights(self) -> dict[str, int]:
        svc = self._service()
        if svc is None:
            return dict.fromkeys(SLOTS, 0)
        parsed = manifests.parse_weights((svc.metadata.annotations or {}).get(manifests.WEIGHTS_ANNOTATION))
        if parsed is None:
            raise ServingError(f"service {self.k.name} has no readable {manifests.WEIGHTS_ANNOTATION} annotation")
        return check_weights(parsed, allow_none=True)

    def status(self) -> dict[str, SlotStatus]:
        weights = self.weights()
        out = {}
        for slot in SLOTS:
            url = self.k.slot_url.format(service=self._name(slot), namespace=self.k.namespace, port=self.k.service_port)
            dep = self._deployment(slot)
            if dep is None:
                out[slot] = SlotStatus(slot, None, False, url, weights[slot], detail="not deployed")
                continue
            pods = self.core.list_namespaced_pod(
                self.k.namespace,
                label_selector=",".join(f"{k}={v}" for k, v in manifests.selector(self.cfg, slot).items()),
            )
            ready, want = dep.status.ready_replicas or 0, dep.spec.replicas or 0
            detail = "stopped (0 replicas)" if want == 0 else f"{ready}/{want} pods ready"
            out[slot] = SlotStatus(
                slot,
                dep.metadata.labels.get(manifests.VERSION_LABEL),
                want > 0 and _rolled_out(dep),
                url,
                weights[slot],
                pods=[p.metadata.name for p in pods.items],
                detail=detail,
            )
        return out

    def live_metrics(self, slot: str, since: float) -> SlotMetrics:
        check_slot(slot)
        if not self.k.prometheus_url:
            raise ServingError("live metrics on Kubernetes need serving.kubernetes.prometheus_url (a Prometheus "
                               "that scrapes the serving pods)")  # fmt: skip
        dep = self._deployment(slot)
        version = dep.metadata.labels.get(manifests.VERSION_LABEL) if dep is not None else None
        now = time.time()
        window = f"{max(1, math.ceil(now - since))}s"
        sel = f'slot="{slot}",version="{version}"'
        gen = f'{sel},endpoint=~"/v1/(chat/)?completions"'
        q = {
            "requests": f"sum(increase(clm_serving_requests_total{{{gen}}}[{window}]))",
            "errors": f'sum(increase(clm_serving_errors_total{{{gen},type="server"}}[{window}]))',
            "p95": "1000 * histogram_quantile(0.95, sum by (le) "
            f"(rate(clm_serving_request_latency_seconds_bucket{{{gen}}}[{window}])))",
            "fb_count": f"sum(increase(clm_serving_feedback_rating_count{{{sel}}}[{window}]))",
            "fb_sum": f"sum(increase(clm_serving_feedback_rating_sum{{{sel}}}[{window}]))",
        }
        v = {key: self._query(query, now) for key, query in q.items()}
        fb = round(v["fb_count"] or 0)
        return SlotMetrics(
            slot=slot,
            since=since,
            until=now,
            requests=round(v["requests"] or 0),
            errors=round(v["errors"] or 0),
            p95_ms=v["p95"],
            feedback_count=fb,
            feedback_mean=(v["fb_sum"] or 0) / v["fb_count"] if fb else None,
        )

    def _query(self, query: str, at: float) -> float | None:
        url = f"{self.k.prometheus_url.rstrip('/')}/api/v1/query"
        try:
            resp = self.http.get(url, params={"query": query, "time": at})
            resp.raise_for_status()
            result = resp.json()["data"]["result"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise ServingError(f"Prometheus at {self.k.prometheus_url} failed: {exc}") from None
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def stop(self, slot: str) -> None:
        check_slot(slot)
        weight = self.weights()[slot]
        if weight > 0:
            raise ServingError(f"slot {slot} carries {weight}% of traffic; shift it to {other_slot(slot)} first")
        if self._deployment(slot) is not None:
            self._scale(slot, 0)

    def smoke_test(self, slot: str) -> None:
        st = self.status()[check_slot(slot)]
        if not st.healthy:
            raise ServingError(f"slot {slot} is not healthy: {st.detail}")
        smoke(self.http, st.url, self.cfg.registry.model_name, st.version, slot)


def _rolled_out(dep) -> bool:
    """Every desired pod runs the current template and is ready (what ``kubectl rollout status`` waits for)."""
    want = dep.spec.replicas or 0
    s = dep.status
    return (
        (s.observed_generation or 0) >= (dep.metadata.generation or 0)
        and (s.updated_replicas or 0) == want
        and (s.ready_replicas or 0) == want
        and (s.replicas or 0) == want
    )


register_backend(name="kubernetes", backend_cls=KubernetesBackend)
