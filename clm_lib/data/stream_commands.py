"""``clm kafka``: feed records to the ``ingest.kafka`` topic and consume it outside Airflow (registered in
:mod:`clm_lib.cli`).

``clm kafka send FILE`` sends one message per record of a landing-style file (JSONL lines as they are, so a
malformed line stays malformed; CSV and Parquet rows as JSON objects); ``--demo TASK`` sends a generated demo drop
instead. With ``clm up`` running and ``ingest.kafka.enabled``, the ``clm_ingest_stream`` DAG's watcher wakes and
its task ingests them; ``clm kafka consume`` does the same work in this process (``clm_lib/data/stream.py``).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from clm_lib.config import ClmConfig, load_config
from clm_lib.errors import ClmError


def _config() -> ClmConfig:
    cfg = load_config()
    if not cfg.ingest.kafka.enabled:
        raise ClmError("Kafka ingestion is off: set ingest.kafka.enabled: true (or CLM__INGEST__KAFKA__ENABLED=true) "
                       "and run `clm up`")
    return cfg


def _messages(path: Path) -> list[bytes]:
    """One message per record: JSONL lines verbatim (blank ones skipped), CSV/Parquet rows as JSON objects."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return [line for line in path.read_bytes().splitlines() if line.strip()]
    if suffix in (".csv", ".parquet"):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(path) if suffix == ".parquet" else pacsv.read_csv(path)
        return [json.dumps(row, ensure_ascii=False, default=str).encode() for row in table.to_pylist()]
    raise ClmError(f"{path}: send .jsonl, .csv or .parquet files")


@click.group("kafka")
def kafka_group() -> None:
    """Kafka ingestion (ingest.kafka): send records to the topic, or consume it here."""


@kafka_group.command("send")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--demo", "demo_task", help="Send a generated demo drop of this task instead of a file.")
@click.option("--rows", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Records in a --demo drop.")
def send(path: Path | None, demo_task: str | None, rows: int) -> None:
    """Send the records of PATH (or a --demo drop) to ingest.kafka.topic, one message each."""
    from clm_lib.data.stream import ensure_topic, produce

    if (path is None) == (demo_task is None):
        raise click.UsageError("give a file or --demo TASK (one of them)")
    cfg = _config()
    if demo_task is not None:
        from clm_lib.demo.stream import generate_task

        if demo_task not in cfg.data.tasks:
            raise ClmError(f"unknown task {demo_task!r} (data.tasks: {', '.join(cfg.data.tasks)})")
        values = [json.dumps(r, ensure_ascii=False).encode() for r in generate_task(demo_task, rows, seed=7)]
    else:
        values = _messages(path)
    kafka = cfg.ingest.kafka
    ensure_topic(kafka)
    acked = produce(kafka, values)
    click.echo(f"sent {acked} of {len(values)} message(s) to {kafka.topic} on {kafka.bootstrap_servers}")
    if acked != len(values):
        raise ClmError(f"{len(values) - acked} message(s) were not acknowledged by the broker")


@kafka_group.command("consume")
@click.option("--max-windows", type=click.IntRange(min=1), help="Stop after this many poll windows.")
def consume_cmd(max_windows: int | None) -> None:
    """Ingest the topic from the group's committed offsets until a poll window is empty (what the
    clm_ingest_stream task does); print the counts as JSON."""
    from clm_lib.data.stream import consume

    result = consume(_config(), actor=f"cli:{getpass.getuser()}", max_windows=max_windows).as_dict()
    summary = {k: result[k] for k in ("topic", "group_id", "cluster", "messages", "curated", "quarantined",
                                      "duplicates", "already_committed")}
    summary["windows"] = len(result["windows"])
    click.echo(json.dumps(summary, indent=2))
