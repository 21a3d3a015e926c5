"""Plugin registries: how every pluggable family (drift detectors, continual strategies, serving backends) is extended.

One idiom for all of them, the one peft uses for its tuners (``register_peft_method(name=..., config_cls=...,
model_cls=...)``): each family owns one :class:`Registry` and exposes ``register_<family>(name=..., <family>_cls=...)``.
A built-in registers itself with that same call at the bottom of its own module, exactly as a user's plugin does.

A registry knows its built-ins by module path and imports one only when it is asked for: listing the names costs no
import at all, and choosing the ``local`` serving backend never imports the Kubernetes client. This module is not the
MLflow model registry (:mod:`clm_lib.registry`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

from clm_lib.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Subclasses of ``base`` by name, with the built-in ones imported on first use."""

    def __init__(self, kind: str, base: type[T], builtins: Mapping[str, str] | None = None, *,
                 field: str | None = None) -> None:
        """``kind`` names one member in messages ("drift detector"); ``builtins`` maps a built-in's name to the
        module that registers it, in the order :meth:`classes` lists them; ``field`` is the config field that names
        a member, if there is one (``serving.backend``), and starts the message of an unknown name."""
        self.kind = kind
        self.base = base
        self.builtins = dict(builtins or {})
        self.field = field
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str, cls: type[T]) -> None:
        """Make ``cls`` available under ``name``, which it also gets as its ``name`` attribute.

        A second class under a taken name is refused: a plugin silently replacing a built-in is a bug to hear about.
        """
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__} subclass, so it cannot be a {self.kind}")
        if name in self.builtins and name not in self._classes:
            # The built-in claims its name first, or a plugin registered earlier would break its import later.
            # Called from the built-in's own module, this finds it half-imported in sys.modules and goes on.
            importlib.import_module(self.builtins[name])
        taken = self._classes.get(name)
        if taken is not None and taken is not cls:
            raise ValueError(f"a {self.kind} named {name!r} is already registered ({taken.__qualname__})")
        cls.name = name  # type: ignore[attr-defined]  # every family's base declares ``name: ClassVar[str]``
        self._classes[name] = cls

    def unregister(self, name: str) -> None:
        """Forget the plugin registered under ``name`` (for tests that register one of their own)."""
        self._classes.pop(name, None)

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
        if name not in self._classes and name in self.builtins:
            importlib.import_module(self.builtins[name])
        try:
            return self._classes[name]
        except KeyError:
            where = f"{self.field}: " if self.field else ""
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Every name, built-in or registered, sorted; imports nothing."""
        return sorted(self.builtins.keys() | self._classes.keys())

    def classes(self) -> dict[str, type[T]]:
        """Every class: the built-ins first, in their declared order, then plugins in the order they registered."""
        for name in self.builtins:
            self.get(name)
        plugins = [name for name in self._classes if name not in self.builtins]
        return {name: self._classes[name] for name in [*self.builtins, *plugins]}

    def __contains__(self, name: object) -> bool:
        return name in self.builtins or name in self._classes
