"""``clm data``: the lake tables' versions (history, diff, restore) and maintenance (optimize, vacuum).

The same functions as the Data versions screen and ``/clm/api/v1/data/...``; registered in :mod:`clm_lib.cli`.
Errors are :class:`~clm_lib.errors.ClmError`: the ``clm`` group prints them as ``clm: error: ...`` (exit 2).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, is_dataclass
from typing import Any

import click

from clm_lib.config import ClmConfig, load_config

VERSION = click.IntRange(0, 2**31 - 1)


def _config() -> ClmConfig:
    # The live configuration revision (``clm config``): vacuum uses the retention the DAG would use.
    from clm_lib.config_store import live_config

    return live_config(load_config())


def _actor() -> str:
    # The OS user who runs the command, never an environment variable: anyone could set one (issue #10).
    return f"cli:{getpass.getuser()}"


def _json(value: Any) -> None:
    click.echo(json.dumps(asdict(value) if is_dataclass(value) else value, indent=2, default=str))


@click.group("data")
def data_group() -> None:
    """Lake table versions: history, diff, restore; and maintenance: optimize, vacuum."""


@data_group.command("history")
@click.argument("table")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history_cmd(table: str, limit: int, as_json: bool) -> None:
    """TABLE's versions, newest first: operation, rows added, the batches behind them, the runs that read them."""
    from clm_lib.reporting.data_versions import table_history

    h = table_history(_config(), table, limit=limit)
    if as_json:
        _json(h)
        return
    if not h.commits:
        click.echo(f"lake table {table} was never written")
    for c in h.commits:
        when = f"{c.timestamp:%Y-%m-%d %H:%M:%S}" if c.timestamp else "-"
        rows = "-" if c.rows_added is None else str(c.rows_added)
        runs = ", ".join(f"{r.id} ({r.role})" for r in c.runs)
        click.echo(f"v{c.version:<5} {when}  {c.operation:<10} +{rows:<7} batches: {', '.join(c.batches) or '-'}"
                   + (f"  read by: {runs}" if runs else ""))  # fmt: skip


@data_group.command("diff")
@click.argument("table")
@click.argument("from_version", metavar="A", type=VERSION)
@click.argument("to_version", metavar="B", type=VERSION)
@click.option("--samples", type=click.IntRange(0, 20), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def diff_cmd(table: str, from_version: int, to_version: int, samples: int, as_json: bool) -> None:
    """Rows added and removed from version A to version B of TABLE, per task, with samples."""
    from clm_lib.reporting.data_versions import diff_versions

    d = diff_versions(_config(), table, from_version, to_version, samples=samples)
    if as_json:
        _json(d)
        return
    click.echo(f"{table} v{from_version} -> v{to_version}: +{d.added} -{d.removed} rows")
    for t in d.tasks:
        click.echo(f"  {t.task:<24} +{t.added:<7} -{t.removed}")
    for sign, rows in (("+", d.samples_added), ("-", d.samples_removed)):
        for row in rows:
            click.echo(f"  {sign} [{row.get('task')}] {str(row.get('prompt', ''))[:100]!r}")


@data_group.command("restore")
@click.argument("table")
@click.argument("version", type=VERSION)
@click.option("--reason", required=True, help="Why (kept in the audit log).")
def restore_cmd(table: str, version: int, reason: str) -> None:
    """Make VERSION of TABLE its content again, as a new version (audited); training after it reads that data."""
    from clm_lib.data.versions import restore

    r = restore(_config(), table, version, actor=_actor(), reason=reason)
    click.echo(f"{table}: restored version {r.restored_version} as version {r.new_version} "
               f"(was {r.from_version}; {r.files_restored} file(s) back, {r.files_removed} out)")  # fmt: skip


@data_group.command("optimize")
@click.argument("table")
def optimize_cmd(table: str) -> None:
    """Compact TABLE's small files into larger ones (a new version, same rows)."""
    from clm_lib.data.maintenance import optimize

    r = optimize(_config(), table)
    if r.version is None:
        click.echo(f"{table}: nothing to compact")
    else:
        click.echo(f"{table}: version {r.version}: {r.files_removed} file(s) compacted into {r.files_added}")


@data_group.command("vacuum")
@click.argument("table")
@click.option("--dry-run", is_flag=True, help="List the files it would delete; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vacuum_cmd(table: str, dry_run: bool, as_json: bool) -> None:
    """Delete TABLE's data files no version within the retention, and no protected version, needs."""
    from clm_lib.data.maintenance import vacuum

    r = vacuum(_config(), table, dry_run=dry_run)
    if as_json:
        _json(r)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{table}: {verb} {len(r.removed)} file(s) (retention {r.retention_hours} h)")
    for v, why in r.protected.items():
        click.echo(f"  kept v{v}: {'; '.join(why)}")
    for path in r.removed:
        click.echo(f"  {path}")
