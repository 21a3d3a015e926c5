"""Differences between two configurations, field by field (dotted paths, secrets redacted)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from clm_lib.config_fields import leaves

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One field that differs."""

    path: str
    """Dotted field path, e.g. ``deploy.bake_seconds``."""
    old: Any
    """Value before (JSON; None also when the field did not exist)."""
    new: Any
    """Value after (JSON; None also when the field no longer exists)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def diff_content(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Changes from flat content ``a`` to ``b`` (``{dotted path: value}``), sorted by path."""
    out = []
    for path in sorted(set(a) | set(b)):
        old, new = a.get(path, _MISSING), b.get(path, _MISSING)
        if old != new:
            out.append(Change(path, None if old is _MISSING else old, None if new is _MISSING else new))
    return out


def diff(a: ClmConfig, b: ClmConfig) -> list[Change]:
    """Every field whose value differs from ``a`` to ``b``. Secret fields compare redacted, so a rotated password
    is not a difference and never appears in one."""
    return diff_content(leaves(a), leaves(b))
