"""MLflow's ``champion`` and ``previous`` aliases, written from clm's deployment history: :func:`reconcile_aliases`.

The history is the truth (a promotion or rollback is committed there before any alias moves); the aliases
follow it. Two separate MLflow writes cannot be one transaction, so after any failure the same function runs
again and sets whatever the history says, ``champion`` first: a half-written pair is repaired, never read to
decide where the next rollback goes (issue #10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.deploy import history
from clm_lib.deploy.lock import LeaseLost
from clm_lib.deploy.plan import Record, current_champion, default_target
from clm_lib.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import aliases, move_alias

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AliasMove:
    alias: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        return f"{self.alias}: {self.before or '(none)'} -> {self.after or '(none)'}"


def expected_aliases(records: list[Record]) -> dict[str, str | None] | None:
    """What ``champion`` and ``previous`` must name after this history (None: no deployment made a champion,
    so clm has nothing to say about them)."""
    champion = current_champion(records)
    if champion is None:
        return None
    previous = default_target(records, champion)
    return {CHAMPION: champion, PREVIOUS: previous.version if previous else None}


def reconcile_aliases(
    cfg: ClmConfig,
    *,
    actor: str | None = None,
    reason: str = "set from clm's deployment history",
    current: dict[str, str] | None = None,
    before_write: Callable[[str], None] | None = None,
) -> list[AliasMove]:
    """Write ``champion`` (first) and ``previous`` as clm's deployment history says, each move audited in its own
    transaction; returns the moves made ([] when MLflow already agrees). ``current``: the aliases as just read,
    to spare a registry call. ``before_write(alias)`` runs before each write (the deploy lock's fence: it raises to
    stop). Raises what MLflow raises; calling it again is always safe."""
    with session_scope(cfg.database_url) as s:
        records = history.records(s, cfg.registry.model_name)
    want = expected_aliases(records)
    if want is None:
        return []
    have = aliases(cfg) if current is None else current
    moves = []
    for alias in (CHAMPION, PREVIOUS):
        if have.get(alias) == want[alias]:
            continue
        if before_write is not None:
            before_write(alias)
        with session_scope(cfg.database_url) as s:  # committed per move: a later failure keeps this one's audit
            move_alias(cfg, s, alias, want[alias], actor=actor, reason=reason)
            if alias == CHAMPION and have.get(CHALLENGER) == want[alias]:
                move_alias(cfg, s, CHALLENGER, None, actor=actor, reason=f"{want[alias]} is champion")
        moves.append(AliasMove(alias, have.get(alias), want[alias]))
    if moves:
        log.warning("%s aliases %s (%s)", cfg.registry.model_name, ", ".join(map(str, moves)), reason)
    return moves


def sync_aliases(
    cfg: ClmConfig, *, actor: str | None, reason: str, before_write: Callable[[str], None] | None = None
) -> tuple[list[AliasMove], Exception | None]:
    """:func:`reconcile_aliases`, and once more if it fails: ``(moves, None)``, or ``(moves, error)`` when MLflow
    refused twice (the history stays right; the next rollback or ``clm rollback --reconcile`` repairs)."""
    try:
        return reconcile_aliases(cfg, actor=actor, reason=reason, before_write=before_write), None
    except LeaseLost:
        raise  # not MLflow's failure: this holder may write nothing more
    except Exception as first:  # MLflow fails as several types (MlflowException, requests' errors, OSError)
        log.warning("alias write failed (%s); reconciling from clm's history", first)
        try:
            again = f"{reason} (again after: {first})"
            return reconcile_aliases(cfg, actor=actor, reason=again, before_write=before_write), None
        except LeaseLost:
            raise
        except Exception as exc:
            log.warning("aliases could not be reconciled: %s", exc, exc_info=True)
            return [], exc
