"""Pure presentation helpers: the screens pass untrusted text through them before Jinja escapes it."""

from __future__ import annotations

import unicodedata

_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}


def clip(text: str | None, limit: int = 240) -> str:
    """``text`` for a table cell: at most ``limit`` characters (with an ellipsis), control and format characters
    (bidi overrides, zero-width, NUL) shown as ``\\u202e`` escapes so they cannot reorder or hide what a reader
    sees. HTML escaping is the template's job (autoescape); this only makes the text visible and bounded."""
    if text is None:
        return ""
    cut = len(text) > limit
    text = text[:limit]
    shown = "".join(c if c in "\n\t" or unicodedata.category(c) not in _INVISIBLE else f"\\u{ord(c):04x}" for c in text)
    return shown + ("…" if cut else "")
