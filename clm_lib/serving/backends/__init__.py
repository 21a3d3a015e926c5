"""Serving backends: one shape (:class:`ServingBackend`), one registry, chosen by ``serving.backend``.

A backend registers at the bottom of its module with ``register_backend(name=..., backend_cls=...)`` (the idiom of
:mod:`clm_lib.plugins`); the built-in ones are imported on first use, so choosing ``local`` never imports the
Kubernetes client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clm_lib.plugins import Registry
from clm_lib.serving.backends.base import (
    SLOTS,
    ServingBackend,
    SlotMetrics,
    SlotStatus,
    check_slot,
    check_weights,
    other_slot,
)

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

__all__ = [
    "BACKENDS",
    "SLOTS",
    "ServingBackend",
    "SlotMetrics",
    "SlotStatus",
    "available_backends",
    "check_slot",
    "check_weights",
    "get_backend",
    "other_slot",
    "register_backend",
]

BACKENDS: Registry[ServingBackend] = Registry(
    "backend",
    ServingBackend,
    {name: f"{__name__}.{name}" for name in ("local", "kubernetes")},
    field="serving.backend",
)


def register_backend(*, name: str, backend_cls: type[ServingBackend]) -> None:
    """Make ``backend_cls`` available as ``serving.backend: <name>``."""
    BACKENDS.register(name, backend_cls)


def available_backends() -> list[str]:
    return BACKENDS.names()


def get_backend(cfg: ClmConfig, **kwargs) -> ServingBackend:
    """The backend ``cfg.serving.backend`` names, built for ``cfg`` (``kwargs`` go to its constructor)."""
    return BACKENDS.get(cfg.serving.backend)(cfg, **kwargs)
