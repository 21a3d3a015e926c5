"""Serving settings: where the slots and the router listen, request limits, feedback, and the backend.

Kept free of heavy imports: :class:`~clm_lib.config.ClmConfig` loads it whenever the config is read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KubernetesServingConfig(_Section):
    """The ``kubernetes`` backend: two Deployments (one per slot) and Services, from ``include/k8s/``."""

    namespace: str = "clm"
    """Namespace of the Deployments and Services."""
    name: str = Field(default="clm-serving", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    """Prefix of every object: Service ``<name>``, Deployments and slot Services ``<name>-blue|green``."""
    image: str = "clm-serving:latest"
    """Image that has clm installed (``docker/``); its entry point runs ``clm``."""
    replicas: int = Field(default=2, ge=1)
    """Pods per slot at 100 % (and for the warm standby). Canary weights are approximated by the replica
    ratio, so the finest traffic step is 100 / replicas percent."""
    container_port: int = Field(default=8000, ge=1, le=65535)
    service_port: int = Field(default=80, ge=1, le=65535)
    env_secret: str | None = "clm-serving-env"
    """Secret whose keys become the pods' environment (``MLFLOW_TRACKING_URI``, ``CLM_DATABASE_URL``, object
    store credentials); None: no secret."""
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    )
    """Container resources (Kubernetes syntax), e.g. ``{"limits": {"nvidia.com/gpu": "1"}}``."""
    ready_timeout_s: float = Field(default=600.0, gt=0)
    """How long ``deploy`` waits for every pod of a slot to be ready."""
    slot_url: str = "http://{service}.{namespace}.svc.cluster.local:{port}"
    """How clm (an Airflow worker in the cluster) reaches a slot's own Service, for smoke tests."""
    prometheus_url: str | None = None
    """Prometheus that scrapes the slots' ``/metrics``; the bake window's live metrics come from it. None:
    ``live_metrics`` raises, since the pods alone cannot say what happened in a time window."""


class ServingConfig(_Section):
    """``clm serve`` (one model version per process), the two slots, and the router in front of them."""

    backend: str = "local"
    """Where slots run: ``local`` processes on this machine, ``kubernetes`` Deployments, or the name of a backend
    registered with :func:`clm_lib.serving.backends.register_backend`."""
    host: str = "127.0.0.1"
    """Address ``clm serve`` and the router bind. Loopback on a workstation; the Kubernetes manifests set
    ``0.0.0.0`` inside the pod, where the Service must reach it."""
    router_port: int = Field(default=8100, ge=1, le=65535)
    """The router: the one address clients use (``local`` backend)."""
    blue_port: int = Field(default=8101, ge=1, le=65535)
    green_port: int = Field(default=8102, ge=1, le=65535)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; ``auto`` is CUDA when a GPU is visible."""
    threads: int = Field(default=1, ge=1)
    """torch CPU threads per slot process (two slots and the router share the machine)."""
    default_max_tokens: int = Field(default=32, ge=1)
    """``max_tokens`` of a request that does not say."""
    max_tokens_limit: int = Field(default=256, ge=1)
    """Largest ``max_tokens`` accepted; more is a 400, not a silent cut."""
    default_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """``temperature`` of a request that does not say. 0 (greedy) serves what evaluation scored; OpenAI's own
    default is 1."""
    max_prompt_chars: int = Field(default=8000, ge=1)
    """Longest prompt (or last user message) accepted; longer is a 400."""
    startup_timeout_s: float = Field(default=180.0, gt=0)
    """How long ``deploy`` waits for a slot to load its model and answer ``/healthz``."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """A stopped slot finishes its in-flight requests for at most this long, then is killed."""
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    """The router's limit on one request to a slot (generation included)."""
    health_interval_s: float = Field(default=0.5, gt=0)
    """How often the router checks each slot's ``/healthz``."""
    stats_window_s: int = Field(default=1800, ge=60)
    """How far back the router keeps per-slot statistics (in 0.1 s steps) for ``live_metrics``; longer than
    any bake window."""
    remember_responses: int = Field(default=10000, ge=1)
    """Recent responses a slot keeps so that ``/v1/feedback`` can name one by id; older ids answer 404."""
    feedback_min_rating: float = Field(default=0.8, ge=0.0, le=1.0)
    """A rated answer becomes a training example when its rating (0 bad .. 1 good) is at least this; a
    correction always does. Every rating is kept in the feedback log either way."""
    feedback_batch_rows: int = Field(default=100, ge=1)
    """Training examples from feedback are published to the landing folder as one file per this many rows..."""
    feedback_flush_s: float = Field(default=300.0, gt=0)
    """...or after this many seconds, whichever comes first (and when the slot stops)."""
    feedback_max_correction_chars: int = Field(default=4000, ge=1)
    """Longest ``correction`` a feedback may carry; longer is a 400."""
    feedback_max_comment_chars: int = Field(default=1000, ge=1)
    """Longest ``comment`` a feedback may carry; longer is a 400."""
    require_api_key: bool | None = None
    """Whether the slots' ``/v1/*`` routes need an API key (``Authorization: Bearer clm_...``, made with
    ``clm keys create``). None: required unless the slot binds a loopback address, so the local demo works
    without keys and a slot reachable from elsewhere never answers anonymously."""
    api_key_cache_s: float = Field(default=5.0, gt=0, le=60)
    """How long a slot trusts what it read about a key from clm's database: a revoked key stops working
    within this many seconds."""
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest request body the router and the slots read; more is a 413 before any of it is parsed."""
    max_queued: int = Field(default=16, ge=1)
    """Generation requests a slot holds at once (the one generating included); one more is a 429 with
    ``Retry-After``, so a burst cannot pile up unbounded work and memory."""
    metrics_flush_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How often the router writes the minutes that have ended (requests, errors, p50/p95 latency, feedback per
    version and slot) to ``serving_metrics`` in clm's database, for the Performance screen."""
    metrics_retention_days: int = Field(default=90, ge=1, le=3650)
    """Rows of ``serving_metrics`` older than this many days are deleted by the router."""
    metrics_max_pending: int = Field(default=10080, ge=10)
    """Minute buckets the router keeps in memory while clm's database cannot be written (a week of one version
    on one slot); older ones are dropped and counted in ``clm_router_metrics_buckets_dropped``."""
    kubernetes: KubernetesServingConfig = KubernetesServingConfig()

    @model_validator(mode="after")
    def _ports(self) -> ServingConfig:
        ports = [self.router_port, self.blue_port, self.green_port]
        if len(set(ports)) != 3:
            raise ValueError(f"router_port, blue_port and green_port must differ (got {ports})")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must not exceed max_tokens_limit")
        return self

    def slot_port(self, slot: str) -> int:
        return {"blue": self.blue_port, "green": self.green_port}[slot]

    def api_key_required(self, host: str | None = None) -> bool:
        """Whether a slot bound to ``host`` (default: ``self.host``) asks for API keys."""
        if self.require_api_key is not None:
            return self.require_api_key
        return not is_loopback(host or self.host)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address; anything else (``0.0.0.0`` included) is reachable from elsewhere."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
