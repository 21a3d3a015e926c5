"""What a record is: the Arrow schema of every Delta table, the content id, the train/eval split.

A record is ``{task, prompt, response}``. Its id is the sha256 of the *normalised* fields, so the same
record arriving as JSONL, CSV or Parquet, with CRLF or LF line breaks, composed or decomposed accents,
or stray surrounding whitespace, gets the same id everywhere. The split is a pure function of the id,
so a record lands in the same split on every machine and on every re-ingest.
"""

from __future__ import annotations

import hashlib
import unicodedata
from enum import StrEnum

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


def normalise(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """NFC, LF line breaks, no surrounding whitespace: differences no reader of the text would notice."""
    # Each step is skipped when it cannot change anything (ASCII is already NFC); most text is ASCII.
    if pc.all(pc.string_is_ascii(values)).as_py() is not True:
        # Not pc.utf8_normalize: on pyarrow 25.0.1 it returns NFD whatever ``form`` says (measured), which
        # stored decomposed accents in curated.
        nfc = unicodedata.normalize
        values = pa.array([None if v is None else nfc("NFC", v) for v in values.to_pylist()], pa.string())
    if pc.any(pc.match_substring(values, "\r")).as_py():
        values = pc.replace_substring_regex(values, pattern=r"\r\n?", replacement="\n")
    return pc.utf8_trim_whitespace(values)


def content_ids(task: pa.Array, prompt: pa.Array, response: pa.Array) -> pa.Array:
    """sha256 hex of already-normalised fields (see :func:`normalise`), one per row.

    The hashed text is ``<len>:<task><len>:<prompt><len>:<response>`` (lengths in code points, a null
    field is ``:`` with no length), so field boundaries are unambiguous whatever the text holds.
    """
    parts = []
    for values in (task, prompt, response):
        parts += [pc.cast(pc.utf8_length(values), pa.string()), ":", values]
    joined = pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")
    sha = hashlib.sha256
    return pa.array([sha(b).hexdigest() for b in pc.cast(joined, pa.binary()).to_pylist()], pa.string())


def record_id(task: str | None, prompt: str | None, response: str | None) -> str:
    """The content id of one record, normalised the same way as a batch."""
    fields = [normalise(pa.array([v], pa.string())) for v in (task, prompt, response)]
    return content_ids(*fields)[0].as_py()


def split_of(record_id_hex: str, eval_fraction: float) -> str:
    """``"eval"`` for a stable ``eval_fraction`` of ids, ``"train"`` for the rest.

    Changing ``eval_fraction`` moves records between splits; keep it fixed once models are evaluated.
    """
    return "eval" if int(record_id_hex[:8], 16) < eval_fraction * 0x1_0000_0000 else "train"


def splits(ids: pa.Array, eval_fraction: float) -> pa.Array:
    """:func:`split_of` for a whole column."""
    return pa.array([split_of(i, eval_fraction) for i in ids.to_pylist()], pa.string())


def empty(name: str) -> pa.Table:
    """An empty table with the schema of lake table ``name``."""
    return SCHEMAS[name].empty_table()
