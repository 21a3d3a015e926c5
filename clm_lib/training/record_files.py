"""Record files ``clm train`` and a trainer pod train from: Parquet, JSONL or CSV with ``task, prompt, response``."""

from __future__ import annotations

from pathlib import Path

from clm_lib.errors import TrainingError


def read_records(path: Path, role: str):
    """A record table (``task, prompt, response``; ``id`` computed when absent) from Parquet, JSONL or CSV.

    A ``split`` column, as in clm's curated table, keeps only the ``train`` rows: held-out rows are never trained on.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix in (".jsonl", ".json"):
            import pyarrow.json as pj

            table = pj.read_json(path)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        else:
            raise TrainingError(f"--{role} {path}: unknown format {suffix!r} (use .parquet, .jsonl or .csv)")
    except (OSError, pa.ArrowInvalid) as exc:
        raise TrainingError(f"--{role} {path}: cannot read it: {exc}") from None
    missing = [c for c in ("task", "prompt", "response") if c not in table.column_names]
    if missing:
        have = ", ".join(table.column_names)
        raise TrainingError(f"--{role} {path} lacks column(s) {', '.join(missing)}; it has {have}")
    for c in ("task", "prompt", "response"):
        table = table.set_column(table.column_names.index(c), c, pc.cast(table.column(c), pa.string()))
    if "split" in table.column_names:
        table = table.filter(pc.equal(table.column("split"), "train"))
    if "id" not in table.column_names:
        from clm_lib.data.records import content_ids, normalise

        cols = [normalise(table.column(c)) for c in ("task", "prompt", "response")]
        table = table.append_column("id", content_ids(*(c.combine_chunks() for c in cols)))
    return table
