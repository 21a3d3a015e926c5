"""Run a slot server (``clm serve``) or the router (``clm router``) in the foreground with uvicorn."""

from __future__ import annotations

import logging

from clm_lib.config import ClmConfig
from clm_lib.errors import ServingError

log = logging.getLogger(__name__)


def _check_port(host: str, port: int, what: str) -> None:
    from clm_lib.services.processes import port_in_use

    if port_in_use(host, port):
        raise ServingError(f"port {host}:{port} for {what} is already in use; choose another with --port")


def _run(app, host: str, port: int, *, graceful_s: float) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        # Per-request log lines would cost more than the router itself; /metrics counts every request.
        access_log=False,
        # The router passes the slot's own Date/Server headers through instead of adding second ones.
        server_header=False,
        date_header=False,
        # On SIGTERM, requests in flight get this long to finish before the process exits.
        timeout_graceful_shutdown=graceful_s,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run()


def serve(
    cfg: ClmConfig,
    *,
    version: str | None = None,
    alias: str | None = None,
    slot: str = "blue",
    port: int | None = None,
    host: str | None = None,
) -> None:
    """Load a registered version and serve it until SIGTERM/SIGINT."""
    from clm_lib.serving.api import create_app
    from clm_lib.serving.model import load_served_model, resolve_version

    host = host or cfg.serving.host
    port = port or (cfg.serving.slot_port(slot) if slot in ("blue", "green") else cfg.serving.blue_port)
    _check_port(host, port, f"slot {slot}")
    version = resolve_version(cfg, version, alias)
    model = load_served_model(cfg, version)
    log.info("slot %s serves %s version %s on http://%s:%d", slot, model.name, version, host, port)
    keys = "required" if cfg.serving.api_key_required(host) else "not required (loopback)"
    log.info("API keys %s on slot %s", keys, slot)
    _run(create_app(cfg, model, slot=slot, host=host), host, port, graceful_s=cfg.serving.drain_timeout_s)


def run_router(cfg: ClmConfig, *, port: int | None = None, host: str | None = None) -> None:
    """Run the local backend's router: slots on ``serving.blue_port``/``green_port``, weights from its state."""
    from clm_lib.serving.backends.local import LocalBackend
    from clm_lib.serving.metrics_store import MetricsStore
    from clm_lib.serving.router import Router

    host = host or cfg.serving.host
    port = port or cfg.serving.router_port
    _check_port(host, port, "the router")
    backend = LocalBackend(cfg)
    router = Router(
        backend.slot_urls(),
        backend.stored_weights(),
        token=backend.router_token(),
        timeout_s=cfg.serving.upstream_timeout_s,
        health_interval_s=cfg.serving.health_interval_s,
        window_s=cfg.serving.stats_window_s,
        max_body_bytes=cfg.serving.max_body_bytes,
        metrics_store=MetricsStore(
            cfg.database_url,
            flush_seconds=cfg.serving.metrics_flush_seconds,
            retention_days=cfg.serving.metrics_retention_days,
            max_pending=cfg.serving.metrics_max_pending,
        ),
    )
    log.info("router on http://%s:%d, weights %s", host, port, router.split.weights)
    _run(router, host, port, graceful_s=cfg.serving.drain_timeout_s)
