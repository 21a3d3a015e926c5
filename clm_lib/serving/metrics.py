"""Prometheus metrics of a slot server (labelled by model version and slot) and of the router (per slot).

Each app gets its own registry (two servers in one test process must not share counters). The bake window
reads the router's windowed numbers (:mod:`clm_lib.serving.stats`); these are for Prometheus and Grafana,
where ``version`` tells the versions apart across restarts and pods.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter's output and no clm rule reads them.
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATING_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)
ENDPOINTS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/feedback"})


class SlotMetrics:
    def __init__(self, *, model: str, version: str, slot: str):
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"version": version, "slot": slot}
        r = self.registry
        self.requests = Counter(
            "clm_serving_requests",
            "Requests answered, by endpoint and status code.",
            [*labels, "endpoint", "code"],
            registry=r,
        )
        self.errors = Counter(
            "clm_serving_errors",
            "Requests that failed: type is client (4xx) or server (5xx).",
            [*labels, "endpoint", "type"],
            registry=r,
        )
        self.latency = Histogram(
            "clm_serving_request_latency_seconds",
            "Time to answer a request.",
            [*labels, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("clm_serving_generated_tokens", "Completion tokens generated.", list(labels), registry=r)
        self.feedback = Histogram(
            "clm_serving_feedback_rating",
            "Ratings (0 bad .. 1 good) of answers; _count and _sum give the mean.",
            list(labels),
            buckets=RATING_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("clm_serving_in_flight", "Requests being answered.", list(labels), registry=r)
        info = Gauge("clm_serving_model_info", "The model version this slot serves.", ["model", *labels], registry=r)
        info.labels(model=model, **labels).set(1)
        self.labels = labels

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        endpoint = endpoint if endpoint in ENDPOINTS else "other"
        self.requests.labels(**self.labels, endpoint=endpoint, code=str(code)).inc()
        self.latency.labels(**self.labels, endpoint=endpoint).observe(seconds)
        if code >= 400:
            self.errors.labels(**self.labels, endpoint=endpoint, type="server" if code >= 500 else "client").inc()


class RouterMetrics:
    def __init__(self, weights: dict[str, int]):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("clm_router_requests", "Requests forwarded, by slot and status code.",
                                ["slot", "code"], registry=r)  # fmt: skip
        self.errors = Counter("clm_router_upstream_errors", "Failed attempts on a slot, by reason.",
                              ["slot", "reason"], registry=r)  # fmt: skip
        self.retries = Counter("clm_router_retries", "Requests sent again to the other slot.",
                               ["from_slot", "to_slot"], registry=r)  # fmt: skip
        self.latency = Histogram("clm_router_request_latency_seconds", "Time to answer, per slot.",
                                 ["slot"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.weight = Gauge("clm_router_weight", "Percent of traffic sent to the slot.", ["slot"], registry=r)
        self.healthy = Gauge("clm_router_slot_healthy", "1 when the slot's /healthz says ready.", ["slot"],
                             registry=r)  # fmt: skip
        self.feedback = Histogram("clm_router_feedback_rating", "Ratings of the slot's answers.", ["slot"],
                                  buckets=RATING_BUCKETS, registry=r)  # fmt: skip
        self.buckets_dropped = Counter(
            "clm_router_metrics_buckets_dropped",
            "Minute buckets of serving metrics dropped unwritten while clm's database could not take them.",
            registry=r,
        )
        for slot, w in weights.items():
            self.weight.labels(slot).set(w)
            self.healthy.labels(slot).set(0)
