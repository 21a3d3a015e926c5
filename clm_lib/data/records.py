"""What a record is: the Arrow schema of every Delta table, the content id, the train/eval split.

A record is ``{task, prompt, response}``. Its id is the sha256 of the *normalised* fields, so the same
record arriving as JSONL, CSV or Parquet, with CRLF or LF line breaks, composed or decomposed accents,
or stray surrounding whitespace, gets the same id everywhere. The split is a pure function of the id,
so a record lands in the same split on every machine and on every re-ingest.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc

FIELDS = ("task", "prompt", "response")
"""Columns every input must carry; anything else is kept in ``metadata``."""

TIMESTAMP = pa.timestamp("us", tz="UTC")  # Delta stores microseconds; nanoseconds would be cast on write


class Problem(StrEnum):
    """Reasons found while *reading* a line, before validation. GX reasons come from the suite file."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ENCODING = "bad_encoding"
    MISSING_COLUMN = "missing_column"
    NOT_A_STRING = "not_a_string"
    WRONG_FIELD_COUNT = "wrong_field_count"
    MALFORMED_CSV = "malformed_csv"


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
"""Every line of every file as it arrived. Non-string values are kept as their JSON text;
``raw_text`` holds the whole line when it could not be split into fields (malformed JSON...)."""

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
``id`` is null when the line could not be parsed into fields."""

SCHEMAS: dict[str, pa.Schema] = {
    "raw": RAW_SCHEMA,
    "curated": CURATED_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    # The replay buffer and frozen eval sets are subsets of curated and keep its shape.
    "replay": CURATED_SCHEMA,
    "eval": CURATED_SCHEMA,
}


def normalise(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """NFC, LF line breaks, no surrounding whitespace: differences no reader of the text would notice."""
    values = pc.utf8_normalize(values, form="NFC")
    values = pc.replace_substring_regex(values, pattern=r"\r\n?", replacement="\n")
    return pc.utf8_trim_whitespace(values)


def content_ids(task: pa.Array, prompt: pa.Array, response: pa.Array) -> pa.Array:
    """sha256 hex of already-normalised fields (see :func:`normalise`), one per row."""
    sha = hashlib.sha256
    dumps = json.dumps
    # A JSON array keeps field boundaries unambiguous whatever characters the text contains.
    ids = [
        sha(dumps(fields, ensure_ascii=False).encode()).hexdigest()
        for fields in zip(task.to_pylist(), prompt.to_pylist(), response.to_pylist(), strict=True)
    ]
    return pa.array(ids, pa.string())


def record_id(task: str, prompt: str, response: str) -> str:
    """The content id of one record, normalised the same way as a batch."""
    normal = [normalise(pa.array([v], pa.string()))[0].as_py() for v in (task, prompt, response)]
    return content_ids(*(pa.array([v], pa.string()) for v in normal))[0].as_py()


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
