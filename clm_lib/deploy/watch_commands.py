"""``clm deploy reconcile`` and ``clm deploy guard``: what the ``clm_deploy_watch`` DAG runs, by hand or from another
scheduler (registered in :mod:`clm_lib.cli`)."""

from __future__ import annotations

import json

import click

from clm_lib.deploy.commands import _actor, live


@click.group("deploy")
def deploy_group() -> None:
    """After promotion: settle promotions whose owner died, and watch the champion's live traffic."""


@deploy_group.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.pass_context
def reconcile_cmd(ctx: click.Context, as_json: bool) -> None:
    """End every promotion whose owner stopped reporting back (its candidate's traffic back on the champion); exit 1
    when one could not be settled."""
    from clm_lib.deploy.reconciler import reconcile

    result = reconcile(live(), actor=_actor())
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.summary())
    ctx.exit(0 if result.ok else 1)


@deploy_group.command("guard")
@click.option("--force", is_flag=True, help="Judge now, even if the schedule says the next judgement is not due.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.pass_context
def guard_cmd(ctx: click.Context, force: bool, as_json: bool) -> None:
    """Judge the champion's live traffic by the safety rules; roll back on a breach. Exit 1 when the guard could
    not do its job (serving unreadable, the rollback refused)."""
    from clm_lib.deploy.guard import guard

    r = guard(live(), actor=_actor(), force=force)
    if as_json:
        click.echo(json.dumps(r.as_dict(), indent=2))
    else:
        click.echo(f"{r.verdict}: {r.message}" + (f" (champion {r.champion}, {r.phase})" if r.champion else ""))
        if r.rollback:
            click.echo(f"rolled back: {r.rollback['from_version']} -> {r.rollback['to_version']} "
                       f"(rollback #{r.rollback['deployment_id']})")  # fmt: skip
        if r.error:
            click.echo(f"clm: {r.error}", err=True)
    ctx.exit(1 if r.error else 0)
