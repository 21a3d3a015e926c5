"""``clm serve``, ``clm router``, ``clm slots``, ``clm keys`` and ``clm feedback``: serving from the command line.

``clm serve`` and ``clm router`` run in the foreground (the ``local`` backend starts them as processes);
``clm slots`` drives the configured backend the way the promotion DAG does; ``clm keys`` manages the serving
API's keys and ``clm feedback`` the review queue of corrections. The operator of these is the OS account that
runs them.
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


def _database_errors(fn):
    """Turn a missing or unreachable clm database into one line that says what to do."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from sqlalchemy.exc import SQLAlchemyError

        from clm_lib.redaction import redact_text, redact_url

        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            why = redact_text(str(getattr(exc, "orig", None) or exc).splitlines()[0])[:200]
            raise ServingError(
                f"clm's database ({redact_url(load_config().database_url)}) cannot be used "
                f"({type(exc).__name__}: {why}); run `clm init` first"
            ) from None

    return wrapper


@click.group()
def keys() -> None:
    """API keys of the serving API: each request to a slot sends one as Authorization: Bearer clm_..."""


@keys.command("create")
@click.option("--owner", required=True, help="Person, team or service the key belongs to (recorded with feedback).")
@click.option(
    "--scope",
    "scopes",
    default="infer",
    show_default=True,
    help="A comma-separated subset of infer, feedback, ingest (POST /clm/api/v1/ingest).",
)
@_database_errors
def keys_create(owner: str, scopes: str) -> None:
    """Create a key and print its secret (shown this once; clm stores only a hash)."""
    from clm_lib.serving.keys import create_key, host_actor

    info, secret = create_key(load_config().database_url, owner=owner, scopes=scopes, actor=host_actor())
    click.echo(f"key {info.id} for {info.owner}, scopes {','.join(info.scopes)}:")
    click.echo(secret)
    click.echo("Keep it now: it cannot be shown again. Revoke it with `clm keys revoke " + str(info.id) + "`.")


@keys.command("list")
@click.option("--active", is_flag=True, help="Only keys that are not revoked.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_database_errors
def keys_list(active: bool, as_json: bool) -> None:
    """Every key: id, public prefix, owner, scopes, who created or revoked it and when (never the secret)."""
    from clm_lib.serving.keys import list_keys

    rows = list_keys(load_config().database_url, include_revoked=not active)
    if as_json:
        click.echo(json.dumps([k.as_dict() for k in rows], indent=2))
        return
    click.echo(f"{'ID':>4}  {'KEY':<18} {'OWNER':<20} {'SCOPES':<15} {'CREATED':<16} STATE")
    for k in rows:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M} by {k.revoked_by}" if k.revoked_at else "active"
        click.echo(
            f"{k.id:>4}  clm_{k.prefix}_... {k.owner[:20]:<20} {','.join(k.scopes):<15} "
            f"{k.created_at:%Y-%m-%d %H:%M} {state}"
        )


@keys.command("revoke")
@click.argument("key_id", type=int, metavar="ID")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@_database_errors
def keys_revoke(key_id: int, reason: str) -> None:
    """Revoke a key; slots refuse it within serving.api_key_cache_s seconds."""
    from clm_lib.serving.keys import host_actor, revoke_key

    cfg = load_config()
    info = revoke_key(cfg.database_url, key_id, actor=host_actor(), reason=reason)
    click.echo(f"key {info.id} (clm_{info.prefix}_..., {info.owner}) revoked; slots refuse it within "
               f"{cfg.serving.api_key_cache_s:g} s")  # fmt: skip


@click.group()
def feedback() -> None:
    """The review queue: corrections sent as feedback reach training only when an operator accepts them."""


def _one_line(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@feedback.command("review")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field, whole texts).")
@_database_errors
def feedback_review(limit: int, as_json: bool) -> None:
    """Corrections waiting for review, oldest first."""
    from clm_lib.serving.review import pending

    items = pending(load_config(), limit=limit)
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in items], indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("no corrections wait for review")
        return
    for i in items:
        click.echo(f"#{i.id}  {i.created_at:%Y-%m-%d %H:%M}  {i.owner}  task {i.task}  rating {i.rating:g}  "
                   f"version {i.model_version} ({i.slot})")  # fmt: skip
        click.echo(f"    prompt      {_one_line(i.prompt, 100)}")
        click.echo(f"    answered    {_one_line(i.response, 100)}")
        click.echo(f"    correction  {_one_line(i.correction, 100)}")
        if i.comment:
            click.echo(f"    comment     {_one_line(i.comment, 100)}")
    click.echo("accept: clm feedback accept ID...   reject: clm feedback reject ID... --reason TEXT")


@feedback.command("accept")
@click.argument("ids", type=int, nargs=-1, required=True, metavar="ID...")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@_database_errors
def feedback_accept(ids: tuple[int, ...], reason: str) -> None:
    """Accept corrections: they go to the landing folder and are curated by the next ingest."""
    from clm_lib.serving.keys import host_actor
    from clm_lib.serving.review import accept

    accepted, path = accept(load_config(), list(ids), actor=host_actor(), reason=reason)
    click.echo(f"accepted {len(accepted)} correction(s): {path} (clm_ingest curates it on its next run)")


@feedback.command("reject")
@click.argument("ids", type=int, nargs=-1, required=True, metavar="ID...")
@click.option("--reason", required=True, help="Why (kept with the feedback and in the audit log).")
@_database_errors
def feedback_reject(ids: tuple[int, ...], reason: str) -> None:
    """Reject corrections: they never reach training."""
    from clm_lib.serving.keys import host_actor
    from clm_lib.serving.review import reject

    rejected = reject(load_config(), list(ids), actor=host_actor(), reason=reason)
    click.echo(f"rejected {len(rejected)} correction(s)")
