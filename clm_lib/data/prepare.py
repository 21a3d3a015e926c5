"""Normalise, identify and check a batch's records part by part, each part once through every step.

A batch's text is far larger than the CPU's caches at a million records (~300 MB), and each step done over whole
columns (normalising, joining the fields to hash them, every length or blank check of the suite) read it again
from memory: 1M records took ~15x as long as 100k. Here the steps run over :data:`STEP_ROWS` rows at a time, so all
but the first find the part in cache. The results are the whole-column ones: every step is row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from clm_lib.data.records import FIELDS, KEY_BYTES, code_points, content_digests, normalise
from clm_lib.validation import native

STEP_ROWS = 16_384
"""Rows per part: ~5 MB of demo-like text, within a cache; fewer rows made the per-part Arrow calls show."""


@dataclass
class Prepared:
    records: pa.Table
    """``id`` and the normalised fields, row for row with the input."""
    keys: pa.Array
    """Each record's key in the curated id index (:mod:`clm_lib.data.id_index`)."""
    unexpected: list[pa.ChunkedArray] | None
    """Per expectation of the suite, which rows it finds unexpected (:func:`clm_lib.validation.native.unexpected`);
    None without a plan (the suite is run by GX)."""


def _parts(table: pa.Table) -> Iterator[pa.Table]:
    """``table`` in contiguous parts of about :data:`STEP_ROWS` rows (the reader's small blocks are merged)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in table.to_batches(max_chunksize=STEP_ROWS):
        pending.append(batch)
        held += batch.num_rows
        if held >= STEP_ROWS:
            yield pa.Table.from_batches(pending).combine_chunks()
            pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks()


def prepare(rows: pa.Table, plan: native.Plan | None) -> Prepared:
    """``rows``' fields normalised (:func:`clm_lib.data.records.normalise`), their content ids and index keys, and,
    with a ``plan``, the suite's per-row findings on the normalised records."""
    parts: list[pa.Table] = []
    keys: list[pa.Array] = []
    found: list[list[pa.Array]] = []
    for part in _parts(rows.select(list(FIELDS))):
        normal = {f: normalise(part[f]) for f in FIELDS}
        lengths = {f: code_points(normal[f]) for f in FIELDS}  # hashed with the text, and checked by the suite
        ids, part_keys = content_digests(*normal.values(), lengths=tuple(lengths.values()))
        records = pa.table({"id": ids, **normal})
        parts.append(records)
        keys.append(part_keys)
        if plan is not None:
            found.append(native.unexpected(plan, records, lengths))
    if not parts:
        empty = pa.table({"id": pa.array([], pa.string()), **{f: pa.array([], pa.string()) for f in FIELDS}})
        return Prepared(empty, pa.array([], pa.binary(KEY_BYTES)),
                        None if plan is None else [pa.chunked_array([], pa.bool_()) for _ in plan.steps])
    unexpected = None
    if plan is not None:
        unexpected = [pa.chunked_array([c for masks in found for c in _chunks(masks[i])], pa.bool_())
                      for i in range(len(plan.steps))]
    return Prepared(pa.concat_tables(parts), pa.concat_arrays(keys), unexpected)


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]
