"""Which text encoding a JSONL or CSV landing file is read with (``data.encoding``).

- ``utf-8`` (default): strict. A line with bytes that are not UTF-8 is quarantined (``bad_encoding``),
  and when the file as a whole looks like another encoding its detail and the batch notes say which
  one and what to do ("re-save it as UTF-8 or set data.encoding: cp1252"), instead of leaving people to
  guess from a replacement character.
- ``auto``: a file that is valid UTF-8 is read as UTF-8; one that is not is read with the encoding it
  clearly looks like (Windows-1252/Latin-1, or UTF-16 with a byte order mark), recorded in the batch
  notes. When no encoding is clear, ``auto`` behaves like ``utf-8``.
- any Python codec name (``cp1252``, ``latin-1``, ``shift_jis``...): every file is read with it.

Recognition is deliberately narrow. ``charset-normalizer`` was tried on short support-ticket files and
named French and German Windows-1252 text ``cp775`` or ``cp1250`` (3.5.2), which would have curated
mojibake; a strict Windows-1252 decode whose non-ASCII characters are all letters or common
punctuation is right for the files people actually drop (Excel and Windows exports) and says "not
recognised" for the rest.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

import pyarrow as pa

from clm_lib.errors import IngestError

UTF8 = "utf-8"
AUTO = "auto"

# cp1252 punctuation and symbols that real text uses; any other non-letter (a control character, a box-drawing
# one) means the bytes are something else.
_TEXT_SYMBOLS = frozenset("\u00a0–—‘’‚“”„…•€£¥§°±²³µ¶·×÷«»¿¡©®™†‡‰‹›ˆ˜¢¤¦¨¬¯´¸¹º¼½¾ª")  # noqa: RUF001


@dataclass(frozen=True)
class TextEncoding:
    """How one file's bytes are turned into text."""

    codec: str
    note: str | None = None
    """For the batch notes: what was decided about the file as a whole (None: plain UTF-8)."""
    hint: str | None = None
    """Appended to the detail of each ``bad_encoding`` record: what to do about the file."""


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8."""
    # Arrow's validation, not bytes.decode: the same answer without building the text (6x faster, measured).
    try:
        pa.array([data], pa.large_binary()).view(pa.large_string()).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def guess(data: bytes) -> str | None:
    """The encoding a non-UTF-8 file clearly looks like: ``utf-16`` (byte order mark) or ``cp1252``; else None."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # cp1252 leaves 0x81 0x8d 0x8f 0x90 0x9d undefined
        return None
    for c in text:
        if c in "\t\r\n" or " " <= c <= "~" or c in _TEXT_SYMBOLS:
            continue
        if not unicodedata.category(c).startswith("L"):  # a control character: binary, or another encoding
            return None
    return "cp1252"


def choose(data: bytes, setting: str) -> TextEncoding:
    """The encoding ``data`` is read with under ``data.encoding: setting`` (see the module docstring)."""
    if setting not in (UTF8, AUTO):
        return TextEncoding(setting, note=f"read as {setting} (data.encoding)")
    if is_utf8(data):
        return TextEncoding(UTF8)
    looks = guess(data)
    if setting == AUTO and looks:
        return TextEncoding(looks, note=f"the file is not UTF-8; read as {looks}, which it looks like "
                                        "(data.encoding: auto)")
    if looks:
        hint = f"the file is not UTF-8 (it looks like {looks}): re-save it as UTF-8 or set data.encoding: {looks}"
    else:
        hint = "the file is not UTF-8 and its encoding was not recognised: re-save it as UTF-8 or set data.encoding"
    return TextEncoding(UTF8, note=f"{hint}; lines with bytes that are not UTF-8 are quarantined (bad_encoding)",
                        hint=hint)


def to_utf8(data: bytes, codec: str) -> bytes:
    """``data`` re-encoded as UTF-8. Bytes ``codec`` cannot decode stay as they were (so the reader flags
    their line ``bad_encoding`` as it does for UTF-8), instead of failing the whole file."""
    if codec == UTF8:
        return data
    try:
        return data.decode(codec, "surrogateescape").encode("utf-8", "surrogateescape")
    except UnicodeDecodeError as exc:  # codecs that are not ASCII-based (UTF-16) cannot escape a stray byte
        raise IngestError(f"the file cannot be read as {codec}: {exc.reason} at byte {exc.start}") from None
