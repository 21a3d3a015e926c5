"""Kubernetes objects of the serving slots, rendered from the templates in ``include/k8s/`` (Jinja2).

Values are inserted with ``tojson`` (JSON is YAML), so a name, an image or an environment value can never break the
YAML around it; the rendered text is parsed back into plain dicts that the kubernetes client sends as they are.
Objects are named from ``serving.kubernetes.name`` (``N``): ConfigMap ``N-config``, Deployments ``N-blue`` and
``N-green``, Services ``N`` (clients) and ``N-blue`` / ``N-green`` (one slot each, for smoke tests).
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from clm_lib.config import REPO_ROOT, ClmConfig
from clm_lib.errors import ServingError

TEMPLATES = REPO_ROOT / "include" / "k8s"
NAME_LABEL = "app.kubernetes.io/name"
SLOT_LABEL = "clm.io/slot"
VERSION_LABEL = "clm.io/model-version"
WEIGHTS_ANNOTATION = "clm.io/weights"
CONFIG_PATH = "/etc/clm/clm.yaml"
HOME_PATH = "/var/lib/clm"


def _render(template: str, **values: Any) -> dict[str, Any]:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return yaml.safe_load(env.get_template(template).render(**values))


def selector(cfg: ClmConfig, slot: str | None = None) -> dict[str, str]:
    """Pods of one slot, or of both (``slot`` None)."""
    sel = {NAME_LABEL: cfg.serving.kubernetes.name}
    return sel | ({SLOT_LABEL: slot} if slot else {})


def labels(cfg: ClmConfig, slot: str | None = None, version: str | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/part-of": "clm", "app.kubernetes.io/managed-by": "clm", **selector(cfg, slot)}
    return out | ({VERSION_LABEL: version} if version else {})


def config_map(cfg: ClmConfig) -> tuple[dict[str, Any], str]:
    """The ConfigMap holding the effective clm config, and its sha256 (pods roll when it changes).

    ``serving.host`` becomes ``0.0.0.0``: inside a pod the server must answer the Service, not only loopback.
    A ConfigMap is readable by anyone who may read the namespace: the dump holds secret URLs redacted, and the pods
    read the real ones from the ``serving.kubernetes.env_secret`` Secret (its variables win over the file).
    """
    redacted = [f for f, s in (("database.url", cfg.database.url), ("registry.tracking_uri", cfg.registry.tracking_uri))
                if s is not None and str(s) != s.get_secret_value()]
    if redacted and not cfg.serving.kubernetes.env_secret:
        raise ServingError(
            f"{' and '.join(redacted)} hold a password or token, which never goes into the ConfigMap: put them in a "
            "Secret (CLM_DATABASE_URL, MLFLOW_TRACKING_URI) and name it in serving.kubernetes.env_secret"
        )
    settings = cfg.model_dump(mode="json")
    settings["serving"]["host"] = "0.0.0.0"
    text = yaml.safe_dump(settings, sort_keys=True)
    k = cfg.serving.kubernetes
    body = _render("serving-config.yaml.j2", name=k.name, namespace=k.namespace, labels=labels(cfg), config_yaml=text)
    return body, hashlib.sha256(text.encode()).hexdigest()


def deployment(cfg: ClmConfig, slot: str, version: str, config_sha: str) -> dict[str, Any]:
    k = cfg.serving.kubernetes
    port = str(k.container_port)
    args = ["serve", "--version", version, "--slot", slot, "--port", port, "--host", "0.0.0.0"]
    env = [
        {"name": "CLM_CONFIG", "value": CONFIG_PATH},
        {"name": "CLM_HOME", "value": HOME_PATH},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
    ]
    return _render(
        "serving-deployment.yaml.j2",
        name=k.name,
        namespace=k.namespace,
        slot=slot,
        labels=labels(cfg, slot, version),
        selector=selector(cfg, slot),
        model_name=cfg.registry.model_name,
        replicas=k.replicas,
        image=k.image,
        args=args,
        env=env,
        env_secret=k.env_secret,
        container_port=k.container_port,
        resources=k.resources,
        config_sha=config_sha,
        grace_seconds=int(cfg.serving.drain_timeout_s) + 10,
        startup_failures=max(1, int(cfg.serving.startup_timeout_s / 2)),
    )


def service(cfg: ClmConfig, *, slot: str | None, weights: dict[str, int] | None = None) -> dict[str, Any]:
    """The clients' Service (``weights`` given; ``slot`` is the live one, None during a canary) or a slot's own."""
    k = cfg.serving.kubernetes
    own = weights is None
    annotations = {} if own else {WEIGHTS_ANNOTATION: weights_text(weights)}
    return _render(
        "serving-service.yaml.j2",
        service=f"{k.name}-{slot}" if own else k.name,
        namespace=k.namespace,
        labels=labels(cfg, slot if own else None),
        annotations=annotations,
        selector=selector(cfg, slot),
        service_port=k.service_port,
    )


def weights_text(weights: dict[str, int]) -> str:
    return ",".join(f"{s}={w}" for s, w in sorted(weights.items()))


def parse_weights(text: str | None) -> dict[str, int] | None:
    """Inverse of the weights annotation (``blue=90,green=10``); None when absent or unreadable."""
    if not text:
        return None
    try:
        return {s: int(w) for s, w in (item.split("=", 1) for item in text.split(","))}
    except ValueError:
        return None
