"""Query parameters of the screens and REST routes: read and checked, or an error naming the parameter.

:class:`BadFilter` becomes a 422 naming the field (a screen shows it as a notice), :class:`NotFound` a 404 naming
the unknown thing.
"""

from __future__ import annotations

from collections.abc import Mapping

from clm_lib.errors import ClmError

PAGE_SIZE = 25
"""Rows per page of a screen's table."""


class BadFilter(ClmError):
    """A filter or parameter that cannot be applied; ``field`` names it (a REST route answers 422)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class NotFound(ClmError):
    """An unknown batch, table, version...; the message names it (a REST route answers 404)."""


def int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query argument of a screen, or :class:`BadFilter` naming it."""
    raw = args.get(name)
    if raw in (None, ""):
        return default
    if not (len(raw) <= 12 and raw.strip().lstrip("-").isdigit()) or not low <= int(raw) <= high:
        raise BadFilter(name, f"{raw[:40]!r} is not a whole number from {low} to {high}")
    return int(raw)


def text_arg(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > 200:
        raise BadFilter(name, "longer than 200 characters")
    return value or None
