"""Which serving slot is which: the one carrying production traffic, and the idle one a new version goes to.

The backend knows what each slot runs and the weights; the ``champion`` alias says what should serve.
These helpers read the first in the light of the second, the same way for a rollout and a rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clm_lib.serving.backends.base import SLOTS, other_slot

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import SlotStatus


def serving_slot(status: dict[str, SlotStatus], weights: dict[str, int], version: str | None = None) -> str | None:
    """The healthy slot with the most traffic (serving ``version``, when given); None if none serves."""
    candidates = [
        s
        for s in SLOTS
        if weights.get(s, 0) > 0
        and s in status
        and status[s].healthy
        and status[s].version is not None
        and (version is None or status[s].version == version)
    ]
    return max(candidates, key=lambda s: weights.get(s, 0), default=None)


def idle_slot(weights: dict[str, int], live: str | None) -> str:
    """Where a new version goes: the slot without traffic (blue when nothing serves yet)."""
    if live is not None:
        return other_slot(live)
    return min(SLOTS, key=lambda s: weights.get(s, 0))


def all_on(slot: str) -> dict[str, int]:
    """Every request to ``slot``."""
    return {slot: 100, other_slot(slot): 0}


def split(slot: str, percent: int) -> dict[str, int]:
    """``percent`` of requests to ``slot``, the rest to the other one."""
    return {slot: percent, other_slot(slot): 100 - percent}
