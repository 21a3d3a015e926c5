"""Read a landing file into one row per record, without ever losing a line.

Every record the file holds comes back as a row of :data:`READ_SCHEMA`: the three fields as text
(or null), the other columns as a JSON object in ``metadata``, and, when the record could not be read
cleanly, a ``problem`` code (:class:`~clm_lib.data.records.Problem`) with a human ``detail``. Lines
that cannot be split into fields keep their text in ``raw_text``. Whole-file failures (unreadable,
not Parquet at all, unknown extension) raise :class:`~clm_lib.errors.IngestError`.

Blank lines in JSONL and CSV are not records: they are reported in ``notes``, not as rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from clm_lib.config import DataConfig
from clm_lib.data import encoding as encodings
from clm_lib.data.landing import FileRefused
from clm_lib.data.records import FIELDS, Problem
from clm_lib.errors import IngestError

EXTENSIONS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
"""File extension -> format name (the names ``data.formats`` uses)."""

READ_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("task", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("response", pa.string()),
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("raw_text", pa.string()),
        pa.field("problem", pa.string()),
        pa.field("detail", pa.string()),
    ]
)
"""``line``: 1-based line of JSONL, first physical line of a CSV record, row number in Parquet."""

_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class ReadResult:
    """The records of one file, and what the reader noticed about the file as a whole."""

    format: str
    table: pa.Table
    notes: list[str] = field(default_factory=list)


class _Rows:
    """Column-wise accumulator: one ``add`` per record keeps lines in file order."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in READ_SCHEMA.names}

    def add(
        self,
        line: int,
        values: tuple[str | None, str | None, str | None] = (None, None, None),
        *,
        metadata: str = "{}",
        raw_text: str | None = None,
        problem: str | None = None,
        detail: str | None = None,
    ) -> None:
        for name, value in zip(READ_SCHEMA.names, (line, *values, metadata, raw_text, problem, detail), strict=True):
            self.cols[name].append(value)

    def table(self) -> pa.Table:
        return pa.table(self.cols, schema=READ_SCHEMA)


# Module-level encoders: json.dumps with non-default options builds a new encoder on every call.
_encode_value = json.JSONEncoder(ensure_ascii=False, default=str).encode
_encode_metadata = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode
_FIELD_SET = frozenset(FIELDS)


def _as_text(value: Any) -> str | None:
    """Keep a non-string value losslessly as its JSON text."""
    if value is None or type(value) is str:
        return value
    return _encode_value(value)


def _metadata(extras: dict[str, Any]) -> str:
    return _encode_metadata(extras) if extras else "{}"


def _record_problem(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """First structural problem of a parsed record, and every problem in words."""
    missing = [f for f in FIELDS if f not in obj]
    wrong = [f for f in FIELDS if f in obj and obj[f] is not None and not isinstance(obj[f], str)]
    details = [f"missing column {f!r}" for f in missing]
    details += [f"{f!r} is a {type(obj[f]).__name__} ({_as_text(obj[f])[:60]}), not a string" for f in wrong]
    if missing:
        return Problem.MISSING_COLUMN, "; ".join(details)
    if wrong:
        return Problem.NOT_A_STRING, "; ".join(details)
    return None, None


def _blank_note(blank: list[int], what: str) -> list[str]:
    if not blank:
        return []
    shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
    return [f"{len(blank)} blank {what} skipped (no record on them): {shown}"]


_ARROW_FIELDS = pa.schema([pa.field(f, pa.string()) for f in FIELDS])
_ARROW_BLOCK = 1024 * 1024
"""Bytes per block of ``pyarrow.json``: blocks are parsed in parallel; a longer line fails the fast path."""
_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")  # starts with a literal: searched at memchr speed
_EXTRA_TYPES = (pa.types.is_string, pa.types.is_int64, pa.types.is_boolean)


def _jsonl_lines(data: bytes) -> int:
    """Records :func:`read_jsonl` would count in ``data`` when no line is blank: lines, less a blank last one."""
    last = data.rfind(b"\n")
    return data.count(b"\n") + (1 if data[last + 1:].strip() else 0)


_SCAN_BYTES = 1 << 18


def _object_lines(data: bytes) -> int | None:
    """:func:`_jsonl_lines` of ``data`` when every line after the first starts with ``{`` (then none is blank), else
    None. One numpy pass in cache-sized slices: counting newlines and searching for a blank line took ~4x longer."""
    text = np.frombuffer(data, np.uint8)
    newlines = 0
    for start in range(0, len(text), _SCAN_BYTES):
        part = text[start: start + _SCAN_BYTES + 1]
        ends = part[:-1] == 0x0A  # a newline in the last byte ends the last line: it starts none
        if np.any(ends & (part[1:] != 0x7B)):
            return None
        newlines += int(np.count_nonzero(ends))
    return newlines + 1


def _jsonl_arrow(data: bytes, *, valid_utf8: bool = False) -> pa.Table | None:
    """``data`` read by ``pyarrow.json`` (multi-threaded C++), or None when the file is not one whose every line
    :func:`read_jsonl` would read as a clean record with the same values; the caller then reads it line by line.

    Taken only when nothing could come out differently: one JSON object per line (no blank line; as many rows as
    lines, so no line held two objects), the three fields present, non-null strings in every row (pyarrow cannot
    tell a missing key from ``null``, which read differently), and the other keys of types whose JSON text Arrow
    gives back exactly (strings, integers, booleans; never null: a key missing in one row would read as null).
    Anything else (a malformed line, a number where a string belongs, a repeated key, a float, a nested value, a
    string pyarrow reads as a timestamp) makes pyarrow fail or the checks refuse, and the slow path decides.
    """
    first = data.find(b"\n")
    if not data[: first if first >= 0 else len(data)].strip():
        return None
    lines = _object_lines(data)
    if lines is None:
        if _BLANK_LINE.search(data, 0, data.rfind(b"\n") + 1):
            return None
        lines = _jsonl_lines(data)
    if not valid_utf8 and not encodings.is_utf8(data):  # pyarrow.json lets some through (measured: b"caf\xe9")
        return None
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(block_size=_ARROW_BLOCK),
            parse_options=pajson.ParseOptions(explicit_schema=_ARROW_FIELDS, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != lines or any(table[c].null_count for c in table.column_names):
        return None
    extras = sorted(c for c in table.column_names if c not in _FIELD_SET)
    if any(not any(test(table[c].type) for test in _EXTRA_TYPES) for c in extras):
        return None
    n = table.num_rows
    if extras:
        parts: list[Any] = []
        for i, name in enumerate(extras):
            parts += [("{" if i == 0 else ", ") + encode_basestring(name) + ": ", _json_texts(table[name])]
        parts.append("}")
        metadata = pc.binary_join_element_wise(*parts, "")
    else:
        metadata = pa.repeat(pa.scalar("{}"), n)
    columns = {
        "line": pa.arange(1, n + 1),
        **{f: table[f] for f in FIELDS},
        "metadata": metadata,
        "raw_text": pa.nulls(n, pa.string()),
        "problem": pa.nulls(n, pa.string()),
        "detail": pa.nulls(n, pa.string()),
    }
    return pa.table(columns).cast(READ_SCHEMA)


def _json_texts(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Each value as the JSON text ``json.dumps(..., ensure_ascii=False)`` gives for it."""
    if pa.types.is_string(column.type):
        return pa.array([encode_basestring(v) for v in column.to_pylist()], pa.string())
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    return pc.cast(column, pa.string())


def read_jsonl(data: bytes, hint: str | None = None, *, valid_utf8: bool = False) -> ReadResult:
    """One JSON object per line. Each line is parsed on its own, so one bad line costs only itself.
    ``hint`` (what to do about a file that is not UTF-8) ends the detail of every ``bad_encoding`` line;
    ``valid_utf8``: the caller already checked that ``data`` is UTF-8.

    A file whose every line is a clean record is read by ``pyarrow.json`` instead (:func:`_jsonl_arrow`): the
    same rows, about ten times faster (measured: docs/benchmarks.md, "Ingestion")."""
    if hint is None:
        fast = _jsonl_arrow(data.removeprefix(codecs.BOM_UTF8), valid_utf8=valid_utf8)
        if fast is not None:
            return ReadResult("jsonl", fast, [])
    rows = _Rows()
    cols = rows.cols
    line_col, task_col, prompt_col, response_col = cols["line"], cols["task"], cols["prompt"], cols["response"]
    meta_col, rest = cols["metadata"], (cols["raw_text"], cols["problem"], cols["detail"])
    blank: list[int] = []
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line does not start another
    loads = json.loads
    for number, raw in enumerate(lines, 1):
        encoding_problem = None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", "replace")
            encoding_problem = (
                f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "undecodable bytes were replaced with U+FFFD"
            ) + (f"; {hint}" if hint else "")
        try:
            obj = loads(text)
        except (ValueError, RecursionError) as exc:
            if not text.strip():
                blank.append(number)
                continue
            detail = f"not valid JSON: {getattr(exc, 'msg', exc)} at column {getattr(exc, 'colno', '?')}"
            problem = Problem.MALFORMED_JSON
            if encoding_problem:
                problem, detail = Problem.BAD_ENCODING, f"{encoding_problem}; {detail}"
            rows.add(number, raw_text=text.removesuffix("\r"), problem=problem, detail=detail)
            continue
        if type(obj) is dict and encoding_problem is None:
            # The common case, kept lean: 100k lines should read in well under a second.
            task, prompt, response = obj.get("task"), obj.get("prompt"), obj.get("response")
            if type(task) is str and type(prompt) is str and type(response) is str:
                line_col.append(number)
                task_col.append(task)
                prompt_col.append(prompt)
                response_col.append(response)
                meta_col.append(
                    "{}" if len(obj) == 3 else _encode_metadata({k: v for k, v in obj.items() if k not in _FIELD_SET})
                )
                for col in rest:
                    col.append(None)
                continue
        if type(obj) is not dict:
            rows.add(
                number,
                raw_text=text.removesuffix("\r"),
                problem=Problem.NOT_AN_OBJECT,
                detail=f"line holds a JSON {type(obj).__name__}, not an object with {', '.join(FIELDS)}",
            )
            continue
        problem, detail = _record_problem(obj)
        if encoding_problem:
            problem, detail = Problem.BAD_ENCODING, "; ".join(filter(None, [encoding_problem, detail]))
        rows.add(
            number,
            (_as_text(obj.get("task")), _as_text(obj.get("prompt")), _as_text(obj.get("response"))),
            metadata=_metadata({k: v for k, v in obj.items() if k not in _FIELD_SET}),
            problem=problem,
            detail=detail,
        )
    notes = ["empty file: no records"] if not lines else _blank_note(blank, "lines")
    return ReadResult("jsonl", rows.table(), notes)


def _fix_encoding(fields: list[str], hint: str | None = None) -> tuple[list[str], str | None]:
    """Turn surrogate-escaped bytes back into U+FFFD and say which bytes they were."""
    bad = [m.group() for f in fields for m in _SURROGATE.finditer(f)]
    if not bad:
        return fields, None
    shown = " ".join(f"0x{ord(c) - 0xDC00:02x}" for c in bad[:8])
    fixed = [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields]
    return fixed, f"invalid UTF-8 bytes ({shown}); they were replaced with U+FFFD" + (f"; {hint}" if hint else "")


_CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _csv_records(text: str) -> Iterable[tuple[int, list[str] | None, str | None]]:
    """(first line, fields, parse error) per CSV record; a csv.Error costs only its record."""
    # The stdlib default (128 KiB) would turn a long field into an unreadable record. The limit is
    # process-wide, and raising it only ever accepts more.
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, str(exc)
        else:
            yield start, fields, None
        start = reader.line_num + 1


def _csv_metadata(header: list[str]) -> Callable[[list[str]], str]:
    """Row -> JSON object of its extra columns, sorted by name; the same text ``json.dumps`` would give
    for a dict of strings, built by hand because CSV values are always strings and this runs per row."""
    extras = sorted((h, i) for i, h in enumerate(header) if h not in FIELDS)
    if not extras:
        return lambda _fields: "{}"
    keys = [(encode_basestring(h) + ": ", i) for h, i in extras]

    def encode(fields: list[str]) -> str:
        return "{" + ", ".join(k + encode_basestring(fields[i]) for k, i in keys) + "}"

    return encode


def read_csv(data: bytes, hint: str | None = None) -> ReadResult:
    """CSV with a header row. The stdlib reader is used because it reports the line each record
    starts on (quoted newlines make records span lines) and lets one bad record fail alone.
    ``hint`` ends the detail of every ``bad_encoding`` record, as in :func:`read_jsonl`."""
    rows = _Rows()
    try:
        text = data.decode("utf-8-sig")
        maybe_bad = False
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", "surrogateescape")
        maybe_bad = True
    records = iter(_csv_records(text))
    header: list[str] | None = None
    for _line, fields, _error in records:
        if fields:  # skip blank lines before the header
            header = [h.strip() for h in (_fix_encoding(fields)[0] if maybe_bad else fields)]
            break
    if header is None:
        return ReadResult("csv", rows.table(), ["empty file: no header and no records"])
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise IngestError(f"CSV header repeats column(s) {', '.join(dupes)}: cannot tell which value is meant")
    missing = [f for f in FIELDS if f not in header]
    pos = {name: i for i, name in enumerate(header)}
    width = len(header)
    missing_detail = "; ".join(f"missing column {f!r} (header has: {', '.join(header)})" for f in missing)
    metadata = _csv_metadata(header)
    blank: list[int] = []
    cols = rows.cols
    line_col, meta_col, rest = cols["line"], cols["metadata"], (cols["raw_text"], cols["problem"], cols["detail"])
    value_cols = [(cols[f], pos[f]) for f in FIELDS] if not missing else []
    for line, fields, error in records:
        if error is not None:
            rows.add(line, problem=Problem.MALFORMED_CSV, detail=f"CSV record cannot be parsed: {error}")
            continue
        if not fields:
            blank.append(line)
            continue
        if value_cols and len(fields) == width and not maybe_bad:
            # The common case, kept lean like the JSONL one.
            line_col.append(line)
            for col, i in value_cols:
                col.append(fields[i])
            meta_col.append(metadata(fields))
            for col in rest:
                col.append(None)
            continue
        encoding_problem = None
        if maybe_bad:
            fields, encoding_problem = _fix_encoding(fields, hint)
        if len(fields) != len(header):
            detail = f"expected {len(header)} fields ({', '.join(header)}), got {len(fields)}"
            rows.add(
                line,
                raw_text=json.dumps(fields, ensure_ascii=False),
                problem=Problem.BAD_ENCODING if encoding_problem else Problem.WRONG_FIELD_COUNT,
                detail="; ".join(filter(None, [encoding_problem, detail])),
            )
            continue
        values = tuple(fields[pos[f]] if f in pos else None for f in FIELDS)
        problem = Problem.BAD_ENCODING if encoding_problem else (Problem.MISSING_COLUMN if missing else None)
        detail = "; ".join(filter(None, [encoding_problem, missing_detail])) or None
        rows.add(line, values, metadata=metadata(fields), problem=problem, detail=detail)
    notes = _blank_note(blank, "lines")
    if missing:
        notes.append(f"every record is quarantined: {missing_detail}")
    if not rows.cols["line"]:
        notes.append("header only: no records")
    return ReadResult("csv", rows.table(), notes)


_STRINGISH = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _string_column(table: pa.Table, name: str) -> tuple[pa.Array, pa.Array]:
    """The column as text, and per row why it is not usable text (null when it is)."""
    col = table[name].combine_chunks()
    kind = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if pa.types.is_null(kind) or any(test(kind) for test in _STRINGISH):
        return pc.cast(col, pa.string()), pa.nulls(len(col), pa.string())
    texts = pa.array([_as_text(v) for v in col.to_pylist()], pa.string())
    detail = pa.scalar(f"{name!r} is stored as {col.type}, not a string")
    return texts, pc.if_else(pc.is_valid(col), detail, pa.scalar(None, pa.string()))


@dataclass(frozen=True)
class Limits:
    """Caps on one file's records (``data.max_rows_per_file``, ``data.max_decoded_bytes``); None: no cap."""

    max_rows: int | None = None
    max_decoded_bytes: int | None = None

    @classmethod
    def of(cls, data: DataConfig) -> Limits:
        return cls(data.max_rows_per_file, data.max_decoded_bytes)

    def check(self, name: str, rows: int, decoded: int, *, partial: bool = False) -> None:
        """Raise :class:`FileRefused` when ``rows`` or ``decoded`` bytes pass a cap."""
        so_far = " after reading only part of it" if partial else ""
        if self.max_rows is not None and rows > self.max_rows:
            raise FileRefused(Problem.TOO_MANY_ROWS, f"{name} holds more than data.max_rows_per_file "
                              f"({self.max_rows}) records ({rows} counted{so_far}): split it into smaller files")
        if self.max_decoded_bytes is not None and decoded > self.max_decoded_bytes:
            raise FileRefused(Problem.DECODED_TOO_LARGE, f"{name} decodes to more than data.max_decoded_bytes "
                              f"({self.max_decoded_bytes}): {decoded} bytes in its first {rows} records{so_far}; "
                              "split it into smaller files or raise the limit")


_PARQUET_BATCH_ROWS = 4096
"""Rows decoded at a time: small enough that one batch of long texts stays far below the decoded cap."""


def _parquet_table(source: str | Path | BinaryIO, name: str, limits: Limits) -> pa.Table:
    """The whole file as a table, decoded batch by batch so that a cap stops it before memory fills up.

    Sizes in the footer are checked first, but not trusted: a dictionary-encoded column of one long value
    repeated declares kilobytes and decodes to gigabytes, so the decoded size is counted as it grows.
    """
    try:
        pf = pq.ParquetFile(source)
        meta = pf.metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        limits.check(name, meta.num_rows, declared)
        batches, rows, decoded = [], 0, 0
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            rows, decoded = rows + batch.num_rows, decoded + batch.nbytes
            limits.check(name, rows, decoded, partial=rows < meta.num_rows)
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=pf.schema_arrow)
    except (OSError, pa.ArrowException) as exc:
        raise IngestError(f"{name} is not a readable Parquet file: {exc}") from None


def read_parquet(source: str | Path | BinaryIO, limits: Limits = Limits(), name: str | None = None) -> ReadResult:
    """A Parquet file (a path or an open binary file). Columns of the wrong type quarantine their rows
    (``not_a_string``), values kept. Raises :class:`FileRefused` when a cap in ``limits`` is passed."""
    table = _parquet_table(source, name or str(source), limits)
    n = table.num_rows
    columns: dict[str, pa.Array] = {"line": pa.array(range(1, n + 1), pa.int64())}
    missing_details, type_details = [], []
    for name in FIELDS:
        if name in table.column_names:
            columns[name], wrong = _string_column(table, name)
            type_details.append(wrong)
        else:
            columns[name] = pa.nulls(n, pa.string())
            missing_details.append(f"missing column {name!r} (file has: {', '.join(table.column_names)})")
    extras = table.drop_columns([c for c in FIELDS if c in table.column_names])
    metadata = [_metadata(r) for r in extras.to_pylist()] if extras.num_columns else ["{}"] * n
    columns["metadata"] = pa.array(metadata, pa.string())
    columns["raw_text"] = pa.nulls(n, pa.string())
    # Every problem goes in the detail; a missing column outranks a wrong type as the reason. (Joined in
    # Python: pyarrow 25.0.1's binary_join_element_wise(null_handling="skip") drops rows that are all null.)
    per_row = zip(*(d.to_pylist() for d in type_details), strict=True) if type_details else iter([()] * n)
    columns["detail"] = pa.array(["; ".join([*missing_details, *filter(None, r)]) or None for r in per_row],
                                 pa.string())
    code = Problem.MISSING_COLUMN if missing_details else Problem.NOT_A_STRING
    columns["problem"] = pc.if_else(pc.is_valid(columns["detail"]), pa.scalar(str(code)), pa.scalar(None, pa.string()))
    notes = [f"every record is quarantined: {d}" for d in missing_details]
    if not n:
        notes.append("empty file: no records")
    return ReadResult("parquet", pa.table(columns).select(READ_SCHEMA.names).cast(READ_SCHEMA), notes)


def file_format(path: Path) -> str | None:
    """The format name of ``path`` by its extension, or None when clm does not read it."""
    return EXTENSIONS.get(path.suffix.lower())


def read_text(
    data: bytes, fmt: str, *, encoding: str = "utf-8", limits: Limits = Limits(), name: str = "the file"
) -> ReadResult:
    """A JSONL or CSV file's bytes, decoded as ``data.encoding`` says (:mod:`clm_lib.data.encoding`); what was
    decided about the encoding is the first note. Raises :class:`FileRefused` when a cap in ``limits`` is passed."""
    chosen = encodings.choose(data, encoding)
    utf8 = encodings.to_utf8(data, chosen.codec)
    if fmt == "jsonl":  # bytes taken as they are under utf-8 or auto were just checked: do not check them again
        result = read_jsonl(utf8, chosen.hint, valid_utf8=chosen == encodings.TextEncoding(encodings.UTF8))
    else:
        result = read_csv(utf8, chosen.hint)
    # Text decodes to about its size on disk (data.max_file_bytes bounds it), so the caps are checked once, after.
    limits.check(name, result.table.num_rows, result.table.nbytes)
    if chosen.note:
        result.notes.insert(0, chosen.note)
    return result


def read_file(path: str | Path, *, encoding: str = "utf-8", limits: Limits = Limits()) -> ReadResult:
    """Read ``path`` by its extension (a trusted path: landing files go through
    :func:`clm_lib.data.landing.open_untrusted`). Raises :class:`IngestError` when the file cannot be read at all."""
    path = Path(path)
    fmt = file_format(path)
    if fmt is None:
        raise IngestError(f"{path}: unsupported file type {path.suffix!r} (clm reads {', '.join(EXTENSIONS)})")
    if fmt == "parquet":
        return read_parquet(path, limits)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from None
    return read_text(data, fmt, encoding=encoding, limits=limits, name=str(path))
