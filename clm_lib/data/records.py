"""What a record is: the Arrow schema of every Delta table, the content id, the train/eval split.

A record is ``{task, prompt, response}``. Its id is the sha256 of the *normalised* fields, so the same
record arriving as JSONL, CSV or Parquet, with CRLF or LF line breaks, composed or decomposed accents,
or stray surrounding whitespace, gets the same id everywhere. The split is a pure function of the id,
so a record lands in the same split on every machine and on every re-ingest.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import unicodedata
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FIELDS = ("task", "prompt", "response")
"""Columns every input must carry; anything else is kept in ``metadata``."""

TIMESTAMP = pa.timestamp("us", tz="UTC")  # Delta stores microseconds; nanoseconds would be cast on write


class Problem(StrEnum):
    """Reasons found while *reading* a line or a file, before validation. GX reasons come from the suite file."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ENCODING = "bad_encoding"
    MISSING_COLUMN = "missing_column"
    NOT_A_STRING = "not_a_string"
    WRONG_FIELD_COUNT = "wrong_field_count"
    MALFORMED_CSV = "malformed_csv"
    # A file quarantined as a whole: one quarantine row describes it, none of its content is kept.
    SYMLINK = "symlink_refused"
    SPECIAL_FILE = "special_file_refused"
    HARD_LINK = "hard_link_refused"
    FILE_TOO_LARGE = "file_too_large"
    DECODED_TOO_LARGE = "decoded_too_large"
    TOO_MANY_ROWS = "too_many_rows"


RAW_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("task", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("response", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("raw_text", pa.string()),
        pa.field("ingested_at", TIMESTAMP, nullable=False),
    ]
)
"""Every record of every file as it arrived. Non-string values are kept as their JSON text; ``raw_text``
holds what could not be split into fields (a malformed JSON line; a CSV record with the wrong number of
fields, as a JSON list)."""

CURATED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("ingested_at", TIMESTAMP, nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
    ]
)
"""Validated, de-duplicated, normalised records: what training and evaluation read."""

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("task", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("response", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("raw_text", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("ingested_at", TIMESTAMP, nullable=False),
    ]
)
"""Rejected records with their original values, a machine ``reason`` and a human ``detail``.
``id`` is null when the record could not be read cleanly (reasons from :class:`Problem`). A file refused as a
whole (a symlink, a file over a size cap) is one row with ``line`` 0, its reason and detail, and no content."""

SCHEMAS: dict[str, pa.Schema] = {
    "raw": RAW_SCHEMA,
    "curated": CURATED_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    # The replay buffer and frozen eval sets are subsets of curated and keep its shape.
    "replay": CURATED_SCHEMA,
    "eval": CURATED_SCHEMA,
}


def _text_bytes(values: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """The UTF-8 bytes of ``values``' text, chunk by chunk (no copy; exactly the values', not their whole buffer:
    a slice of a large array must not cost a scan of all of it). For another layout (string views), every buffer
    but validity: more than the text, which only ever sends callers to their exact (slower) step."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = []
    for c in chunks:
        if not (pa.types.is_string(c.type) or pa.types.is_large_string(c.type)):
            out += [np.frombuffer(b, np.uint8) for b in c.buffers()[1:] if b is not None]
            continue
        if c.buffers()[2] is None or not len(c):
            continue
        width = np.int64 if pa.types.is_large_string(c.type) else np.int32
        offsets = np.frombuffer(c.buffers()[1], width, count=c.offset + len(c) + 1)
        out.append(np.frombuffer(c.buffers()[2], np.uint8)[offsets[c.offset]: offsets[-1]])
    return out


def normalise(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """NFC, LF line breaks, no surrounding whitespace: differences no reader of the text would notice."""
    # Each step is skipped when it cannot change anything (ASCII is already NFC; no byte 0x0d, no CR), which is
    # decided on the raw buffers with numpy: ~10x faster than the per-value Arrow kernels.
    buffers = _text_bytes(values)
    if any(b.size and b.max() >= 0x80 for b in buffers):
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        wide = pc.invert(pc.fill_null(pc.string_is_ascii(values), True))
        # Not pc.utf8_normalize: on pyarrow 25.0.1 it returns NFD whatever ``form`` says (measured), which
        # stored decomposed accents in curated. Only the values that are not ASCII go through Python.
        nfc = unicodedata.normalize
        fixed = pa.array([nfc("NFC", v) for v in values.filter(wide).to_pylist()], pa.string())
        values = pc.replace_with_mask(values, wide, fixed)
    if any(np.count_nonzero(b == 0x0D) for b in buffers):
        values = pc.replace_substring_regex(values, pattern=r"\r\n?", replacement="\n")
    return pc.utf8_trim_whitespace(values)


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)
"""Byte -> its two lowercase hex digits, for turning a buffer of digests into hex ids in one numpy step."""
_NIBBLE = np.full(256, 255, np.uint16)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
KEY_BYTES = 16
"""Length of an id's key in the curated id index (:mod:`clm_lib.data.id_index`): the digest's first 128 bits."""


_HASH_ROWS = 65536
"""Rows hashed per step: the joined text of one step stays in cache (1M rows in one step took 1.7x longer)."""


def code_points(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``pc.utf8_length(values)``; read off the offsets when the text is ASCII (one byte a code point)."""
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)) or any(
            b.size and b.max() >= 0x80 for b in _text_bytes(values)):
        return pc.utf8_length(values)
    return pc.binary_length(values)


def content_digests(
    task: pa.Array, prompt: pa.Array, response: pa.Array, lengths: tuple[pa.Array, ...] | None = None
) -> tuple[pa.Array, pa.Array]:
    """:func:`content_ids` and, for each, its index key: the first :data:`KEY_BYTES` bytes of the digest.
    ``lengths``: each field's :func:`code_points`, when the caller has them already."""
    task, prompt, response = (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v
                              for v in (task, prompt, response))
    if lengths is None:
        lengths = tuple(code_points(v) for v in (task, prompt, response))
    lengths = tuple(v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for v in lengths)
    n = len(task)
    fresh = hashlib.sha256().copy  # copying an empty hash is ~25 % cheaper than making one (measured)
    out = []
    # One sha256 call per row is the floor in Python (~1 us each); everything around it is done on whole buffers:
    # rows are sliced out of the joined text's buffer (no per-row Arrow scalar, no copy) and the hex text is built
    # by numpy.
    for start in range(0, n, _HASH_ROWS):
        parts: list[Any] = []
        for values, length in zip((task, prompt, response), lengths, strict=True):
            parts += [pc.cast(length.slice(start, _HASH_ROWS), pa.string()), ":", values.slice(start, _HASH_ROWS)]
        joined = pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")
        width = np.int64 if pa.types.is_large_string(joined.type) else np.int32
        offsets = np.frombuffer(joined.buffers()[1], width, count=len(joined) + 1,
                                offset=joined.offset * np.dtype(width).itemsize)
        data = memoryview(joined.buffers()[2] or b"")
        bounds = offsets.tolist()
        digests = []
        for a, b in itertools.pairwise(bounds):
            h = fresh()
            h.update(data[a:b])
            digests.append(h.digest())
        out.append(b"".join(digests))
    digests = np.frombuffer(b"".join(out), np.uint8)
    ids = pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(np.arange(0, 64 * (n + 1), 64, dtype=np.int32)),
                         pa.py_buffer(_HEX[digests].tobytes())],
    )
    keys = pa.Array.from_buffers(
        pa.binary(KEY_BYTES), n, [None, pa.py_buffer(digests.reshape(n, 32)[:, :KEY_BYTES].tobytes())]
    )
    return ids, keys


def content_ids(task: pa.Array, prompt: pa.Array, response: pa.Array) -> pa.Array:
    """sha256 hex of already-normalised fields (see :func:`normalise`), one per row.

    The hashed text is ``<len>:<task><len>:<prompt><len>:<response>`` (lengths in code points, a null
    field is ``:`` with no length), so field boundaries are unambiguous whatever the text holds.
    """
    return content_digests(task, prompt, response)[0]


def id_keys(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The index keys of hex ids (as :func:`content_digests` gives them with the ids)."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    ids = ids.cast(pa.string())
    n = len(ids)
    lengths = pc.binary_length(ids)
    if n and not ids.null_count and pc.min_max(lengths).as_py() == {"min": 64, "max": 64}:
        # Every id is 64 hex characters: decode the first 32 of each with numpy, not a Python loop.
        start = int(np.frombuffer(ids.buffers()[1], np.int32)[ids.offset])
        text = np.frombuffer(ids.buffers()[2], np.uint8)[start: start + 64 * n].reshape(n, 64)[:, : 2 * KEY_BYTES]
        nibbles = _NIBBLE[text]
        if (nibbles < 16).all():
            raw = (nibbles[:, 0::2] << 4 | nibbles[:, 1::2]).astype(np.uint8).tobytes()
            return pa.Array.from_buffers(pa.binary(KEY_BYTES), n, [None, pa.py_buffer(raw)])
    raw = b"".join(bytes.fromhex(i[: 2 * KEY_BYTES]) for i in ids.to_pylist())
    return pa.Array.from_buffers(pa.binary(KEY_BYTES), n, [None, pa.py_buffer(raw)])


def record_id(task: str | None, prompt: str | None, response: str | None) -> str:
    """The content id of one record, normalised the same way as a batch."""
    fields = [normalise(pa.array([v], pa.string())) for v in (task, prompt, response)]
    return content_ids(*fields)[0].as_py()


def split_of(record_id_hex: str, eval_fraction: float) -> str:
    """``"eval"`` for a stable ``eval_fraction`` of ids, ``"train"`` for the rest.

    Changing ``eval_fraction`` moves records between splits; keep it fixed once models are evaluated.
    """
    return "eval" if int(record_id_hex[:8], 16) < eval_fraction * 0x1_0000_0000 else "train"


def splits(ids: pa.Array | pa.ChunkedArray, eval_fraction: float) -> pa.Array:
    """:func:`split_of` for a whole column, without a Python loop: ``int(h[:8], 16) < x`` is ``h[:8] < hex(ceil(x))``
    for lowercase hex of a fixed width, so the ids' first 8 characters are compared as text."""
    bound = math.ceil(eval_fraction * 0x1_0000_0000)
    if bound >= 0x1_0000_0000:
        return pa.repeat(pa.scalar("eval"), len(ids))
    head = pc.utf8_slice_codeunits(ids, 0, 8)
    result = pc.if_else(pc.less(head, f"{bound:08x}"), "eval", "train")
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def key_splits(keys: pa.Array, eval_fraction: float) -> pa.Array:
    """:func:`splits` from the ids' index keys (:func:`content_digests`): the id's first 8 hex digits are the key's
    first 4 bytes, so the comparison is one of integers, without reading the 64-character ids."""
    bound = math.ceil(eval_fraction * 0x1_0000_0000)
    n = len(keys)
    digests = np.frombuffer(keys.buffers()[1], np.uint8, count=n * KEY_BYTES, offset=keys.offset * KEY_BYTES)
    heads = digests.reshape(n, KEY_BYTES)[:, :4].copy().view(">u4").ravel()
    return pc.if_else(pa.array(heads < bound), "eval", "train")


def empty(name: str) -> pa.Table:
    """An empty table with the schema of lake table ``name``."""
    return SCHEMAS[name].empty_table()
