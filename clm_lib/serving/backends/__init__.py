"""Serving backends: one shape (:class:`ServingBackend`), one registry, chosen by ``serving.backend``.

Backends register with :func:`register_backend`; the built-in ones are imported on first use, so choosing
``local`` never imports the Kubernetes client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from clm_lib.errors import ConfigError
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

_BUILTIN = {"local": "clm_lib.serving.backends.local", "kubernetes": "clm_lib.serving.backends.kubernetes"}
_REGISTRY: dict[str, type[ServingBackend]] = {}


def register_backend(cls: type[ServingBackend]) -> type[ServingBackend]:
    """Class decorator: make ``cls`` available as ``serving.backend: <cls.name>``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_backends() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_backend(cfg: ClmConfig, **kwargs) -> ServingBackend:
    """The backend ``cfg.serving.backend`` names, built for ``cfg`` (``kwargs`` go to its constructor)."""
    name = cfg.serving.backend
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ConfigError(f"serving.backend: unknown backend {name!r} (available: {', '.join(available_backends())})")
    return _REGISTRY[name](cfg, **kwargs)
