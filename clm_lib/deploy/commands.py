"""``clm promote``, ``clm rollback`` and ``clm deployments``: the deploy commands, registered in :mod:`clm_lib.cli`.

Errors are :class:`~clm_lib.errors.ClmError`: the ``clm`` group prints them as ``clm: error: ...`` (exit 2).
"""

from __future__ import annotations

import getpass
import json

import click

from clm_lib.config import ClmConfig, load_config


def live() -> ClmConfig:
    """The file's config with the live configuration revision applied (``clm config``): a promotion or rollback from
    the shell follows the same strategy, bake windows and safety rules as one run by the DAGs."""
    from clm_lib.config_store import live_config

    return live_config(load_config())


def _actor() -> str:
    # The OS user who runs the command, never an environment variable: anyone could set one (issue #10).
    return f"cli:{getpass.getuser()}"


def _print_events(cfg, deployment_id: int) -> None:
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    with session_scope(cfg.database_url) as s:
        for ev in history.events_of(s, deployment_id):
            click.echo(f"  {ev.step:<11} {ev.status:<7} {ev.message}")


@click.command("promote")
@click.argument("version", required=False)
@click.option("--reason", default="", help="Why (kept with the deployment and in the audit log).")
@click.pass_context
def promote_cmd(ctx: click.Context, version: str | None, reason: str) -> None:
    """Gate VERSION (default: the challenger) and roll it out as `deploy.strategy` says; exit 1 unless promoted."""
    from clm_lib.deploy.rollout import rollout

    cfg = live()
    result = rollout(cfg, version, actor=_actor(), reason=reason)
    click.echo(f"deployment #{result.deployment_id} of version {result.version}:")
    _print_events(cfg, result.deployment_id)
    click.echo(f"{result.status}: {result.outcome}; champion: {result.champion_after or '(none)'}")
    ctx.exit(0 if result.status in ("promoted", "skipped") else 1)


@click.command("rollback")
@click.option(
    "--to",
    "to_version",
    metavar="VERSION",
    help="A version that served as champion before (default: the newest such one not rolled back since).",
)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option(
    "--reconcile",
    is_flag=True,
    help="Move nothing: set MLflow's champion and previous aliases from clm's deployment history.",
)
def rollback_cmd(to_version: str | None, reason: str, reconcile: bool) -> None:
    """Put the previous champion (or VERSION) back on all traffic and make it champion."""
    from clm_lib.deploy import rollback as rb

    cfg = live()
    if reconcile:
        moves = rb.reconcile(cfg, actor=_actor())
        click.echo("; ".join(map(str, moves)) if moves else "MLflow's aliases already match clm's history")
        return
    r = rb.rollback(cfg, to_version, actor=_actor(), reason=reason)
    if r.aborted_deployment is not None:
        click.echo(f"ended promotion #{r.aborted_deployment} of version {r.from_version}")
    how = "weight flip to the warm slot" if r.warm else "loaded into the idle slot"
    where = f" on {r.slot} ({how}, {r.switch_ms:.0f} ms)" if r.slot else " (aliases only: no serving)"
    click.echo(f"champion: {r.from_version} -> {r.to_version}{where}; deployment #{r.deployment_id}")


@click.command("deployments")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, events included.")
def deployments_cmd(limit: int, as_json: bool) -> None:
    """The latest promotions and rollbacks, newest first."""
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    cfg = live()
    with session_scope(cfg.database_url) as s:
        rows = [history.as_dict(d, history.events_of(s, d.id) if as_json else None) for d in history.recent(s, limit)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no deployments yet")
    for d in rows:
        change = f"{d['from_version'] or '-'} -> {d['version']}"
        marked = "".join(f"  [v{v} {why}]" for v, why in d["marks"].items())
        click.echo(f"#{d['id']:<4} {d['started_at'][:19]}  {d['kind']:<9} {change:<10} {d['status']:<11} "
                   f"{d['actor']}  {d['outcome']}{marked}")  # fmt: skip
