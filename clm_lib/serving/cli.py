"""``clm serve``, ``clm router`` and ``clm slots``: serving from the command line.

``clm serve`` and ``clm router`` run in the foreground (the ``local`` backend starts them as processes);
``clm slots`` drives the configured backend the way the promotion DAG does.
"""

from __future__ import annotations

import json
import logging

import click

from clm_lib.config import load_config
from clm_lib.errors import ServingError

PORT = click.IntRange(1, 65535)
SLOT = click.Choice(["blue", "green"])


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command()
@click.option("--version", "version_", metavar="N", help="Registered version to serve.")
@click.option("--alias", metavar="NAME", help="Serve the version this alias points at now (e.g. champion).")
@click.option("--slot", type=SLOT, default="blue", show_default=True, help="Slot name it reports and tags ids with.")
@click.option("--port", type=PORT, help="Port (default: serving.blue_port / green_port of the slot).")
@click.option("--host", help="Bind address (default: serving.host, loopback). 0.0.0.0 only inside a container.")
def serve(version_: str | None, alias: str | None, slot: str, port: int | None, host: str | None) -> None:
    """Serve a registered model version with an OpenAI-style API (/v1/completions, /v1/chat/completions)."""
    from clm_lib.serving.server import serve as run

    if (version_ is None) == (alias is None):
        raise ServingError("give exactly one of --version N or --alias NAME")
    _logging()
    run(load_config(), version=version_, alias=alias, slot=slot, port=port, host=host)


@click.command()
@click.option("--port", type=PORT, help="Port (default: serving.router_port).")
@click.option("--host", help="Bind address (default: serving.host).")
def router(port: int | None, host: str | None) -> None:
    """Run the router in front of the blue and green slots (the local backend starts it for you)."""
    from clm_lib.serving.server import run_router

    _logging()
    run_router(load_config(), port=port, host=host)


@click.group()
def slots() -> None:
    """Inspect and drive the blue/green serving slots (the configured serving.backend)."""


def _backend():
    from clm_lib.serving.backends import get_backend

    return get_backend(load_config())


@slots.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def slots_status(as_json: bool) -> None:
    """Version, weight, health and process of each slot."""
    rows = _backend().status()
    if as_json:
        click.echo(json.dumps({s: st.as_dict() for s, st in rows.items()}, indent=2))
        return
    click.echo(f"{'SLOT':<6} {'VERSION':>7} {'WEIGHT':>6}  {'HEALTHY':<7}  {'URL':<24} {'PID/PODS':<10} DETAIL")
    for st in rows.values():
        where = str(st.pid) if st.pid else ",".join(st.pods) or "-"
        click.echo(
            f"{st.slot:<6} {st.version or '-':>7} {st.weight:>5}%  {'yes' if st.healthy else 'no':<7}  "
            f"{st.url or '-':<24} {where:<10} {st.detail}"
        )


@slots.command("deploy")
@click.argument("slot", type=SLOT, metavar="SLOT")
@click.argument("version")
def slots_deploy(slot: str, version: str) -> None:
    """Load VERSION into SLOT (which must carry no traffic) and wait until it is healthy."""
    st = _backend().deploy(slot, version)
    click.echo(f"{slot}: version {st.version}, {'healthy' if st.healthy else st.detail}, {st.url}")


@slots.command("weights")
@click.argument("split", nargs=-1, metavar="[blue=N green=M]")
def slots_weights(split: tuple[str, ...]) -> None:
    """Show the traffic split, or set it (percentages summing to 100)."""
    backend = _backend()
    if split:
        weights = {}
        for item in split:
            slot, _, value = item.partition("=")
            if not value.isdigit():
                raise ServingError(f"write weights as slot=percent, e.g. blue=90 green=10 (got {item!r})")
            weights[slot] = int(value)
        backend.set_weights(weights)
    click.echo(" ".join(f"{s}={w}" for s, w in backend.weights().items()))


@slots.command("stop")
@click.argument("slot", type=SLOT, metavar="SLOT")
def slots_stop(slot: str) -> None:
    """Stop SLOT (it must carry no traffic); in-flight requests finish first."""
    _backend().stop(slot)
    click.echo(f"{slot} stopped")


@slots.command("down")
def slots_down() -> None:
    """Stop the router and both slots (local backend), whatever traffic they carry."""
    backend = _backend()
    if not hasattr(backend, "shutdown"):
        raise ServingError(f"the {backend.name} backend has no shutdown; stop each slot with `clm slots stop`")
    backend.shutdown()
    click.echo("serving is down")
