"""``clm config``: show, history, diff, set and revert configuration revisions (registered in :mod:`clm_lib.cli`).

The same functions as the Configuration screen and ``/v1/config`` (:mod:`clm_lib.reporting.config`). Changes are
audited with the OS user as actor (``cli:<user>``), as ``clm rollback`` does. Errors are
:class:`~clm_lib.errors.ClmError`: the ``clm`` group prints them as ``clm: error: ...`` (exit 2).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict
from typing import Any

import click

from clm_lib.config_store import ConfigChangeError


def _actor() -> str:
    # The OS user who runs the command, never an environment variable: anyone could set one (issue #10).
    return f"cli:{getpass.getuser()}"


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``section.field=value``; the value is YAML, as in ``CLM__...`` variables (``30``, ``[10, 100]``, ``null``)."""
    import yaml

    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ConfigChangeError([(text, "expected section.field=value")])
    try:
        return path.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigChangeError([(path.strip(), "value is not valid YAML")]) from None


def _session():
    from clm_lib.config import load_config
    from clm_lib.db import session_scope

    file_cfg = load_config()
    return file_cfg, session_scope(file_cfg.database_url)


@click.group("config")
def config_group() -> None:
    """Configuration revisions: what is live, its history, and changes with a reason (audited)."""


@config_group.command("show")
@click.option("--version", "number", type=click.IntRange(1), help="A past revision (default: the live one).")
@click.option("--all", "show_all", is_flag=True, help="Also the read-only fields, with why.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every field, read-only ones marked.")
def show_cmd(number: int | None, show_all: bool, as_json: bool) -> None:
    """The live configuration revision (or revision N), field by field."""
    from clm_lib.reporting.config import config_view

    file_cfg, scope = _session()
    with scope as s:
        view = config_view(s, file_cfg, number)
    if as_json:
        click.echo(json.dumps(asdict(view), indent=2, default=str))
        return
    r = view.revision
    live = " (live)" if r.number == view.live_revision else f" (live: {view.live_revision})"
    click.echo(f"revision {r.number}{live}: {r.kind} by {r.actor} at {r.created_at:%Y-%m-%d %H:%M:%S} UTC")
    click.echo(f"  reason: {r.reason}")
    for section in view.sections:
        fields = [f for f in section.fields if show_all or f.read_only is None]
        if fields:
            click.echo(f"\n[{section.title}]")
        for f in fields:
            why = f"   (read-only: {f.read_only})" if f.read_only else ""
            click.echo(f"  {f.path} = {_json(f.value)}{why}")
    if view.file_differs:
        click.echo(f"\nnot used: {view.file_source} (or the environment) sets these run-time fields differently;")
        click.echo("the live revision decides them (save them with `clm config set` to use them):")
        for c in view.file_differs:
            click.echo(f"  {c.path}: live {_json(c.old)}, file {_json(c.new)}")


@config_group.command("history")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history_cmd(limit: int, as_json: bool) -> None:
    """Revisions, newest first, each with what it changed."""
    from clm_lib.reporting.config import revision_list

    file_cfg, scope = _session()
    with scope as s:
        revs = revision_list(s, file_cfg, limit=limit)
    if as_json:
        click.echo(json.dumps(asdict(revs), indent=2, default=str))
        return
    for r in revs.items:
        live = "  (live)" if r.number == revs.live_revision else ""
        what = f"revert to {r.reverted_to}" if r.kind == "revert" else r.kind
        click.echo(f"#{r.number:<4} {r.created_at:%Y-%m-%d %H:%M:%S}  {what:<12} {r.actor}  {r.reason}{live}")
        for c in r.changes:
            click.echo(f"        {c.path}: {_json(c.old)} -> {_json(c.new)}")


@config_group.command("diff")
@click.argument("a", type=click.IntRange(1))
@click.argument("b", type=click.IntRange(1))
def diff_cmd(a: int, b: int) -> None:
    """What changes from revision A to revision B."""
    from clm_lib.reporting.config import revision_diff

    file_cfg, scope = _session()
    with scope as s:
        d = revision_diff(s, file_cfg, a, b)
    if not d.changes:
        click.echo(f"revisions {a} and {b} have the same values")
    for c in d.changes:
        click.echo(f"{c.path}: {_json(c.old)} -> {_json(c.new)}")


def _print_saved(saved) -> None:
    click.echo(f"revision {saved.number} is live (applies from the next DAG run):")
    for c in saved.changes:
        click.echo(f"  {c.path}: {_json(c.old)} -> {_json(c.new)}")


@config_group.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="SECTION.FIELD=VALUE...")
@click.option("--reason", required=True, help="Why (kept with the revision and in the audit log).")
@click.option("--base", "base", type=click.IntRange(1), help="The revision you edited (default: the live one).")
def set_cmd(assignments: tuple[str, ...], reason: str, base: int | None) -> None:
    """Save a new revision with these fields changed, e.g. `clm config set deploy.bake_seconds=30 --reason ...`."""
    from clm_lib.config_store import live_revision
    from clm_lib.reporting.config import save

    changes = dict(parse_assignment(a) for a in assignments)
    file_cfg, scope = _session()
    with scope as s:
        base = base or live_revision(s, file_cfg).number
        saved = save(s, file_cfg, changes=changes, base_revision=base, actor=_actor(), reason=reason)
    _print_saved(saved)


@config_group.command("revert")
@click.argument("number", type=click.IntRange(1))
@click.option("--reason", required=True, help="Why (kept with the revision and in the audit log).")
def revert_cmd(number: int, reason: str) -> None:
    """Make revision NUMBER's values live again, as a new revision."""
    from clm_lib.config_store import live_revision
    from clm_lib.reporting.config import revert

    file_cfg, scope = _session()
    with scope as s:
        base = live_revision(s, file_cfg).number
        saved = revert(s, file_cfg, to=number, base_revision=base, actor=_actor(), reason=reason)
    _print_saved(saved)


def seed_live(file_cfg) -> int:
    """Revision 1 from the file when clm's database has none yet (``clm init``); the live revision's number."""
    from clm_lib.config_store import live_revision
    from clm_lib.db import session_scope

    with session_scope(file_cfg.database_url) as s:
        return live_revision(s, file_cfg).number
