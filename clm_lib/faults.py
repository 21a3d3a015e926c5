"""Fault injection for the crash tests: a named point in the code where the process can be made to die.

``fault_point("ingest.after_raw_commit")`` does nothing unless ``$CLM_FAULT_AT`` names that point, so it
costs one dictionary lookup in production. When it does, the process kills itself with SIGKILL there:
no ``finally`` blocks, no ``atexit``, no database rollback, exactly like the OOM killer or a pulled plug.
The crash tests run the real code in a subprocess with the variable set, then run it again normally and
check that nothing was lost or written twice (``docs/reliability.md`` lists every point and outcome).

``CLM_FAULT_AT`` holds one or more comma-separated points, each ``name`` (die the first time it is
reached) or ``name@N`` (die the N-th time this process reaches it, e.g. while ingesting the second
file of a landing folder). ``CLM_FAULT_MODE=raise`` raises :class:`InjectedFault` instead of killing,
to test how a Python exception (a bug, ``MemoryError``) at that point is handled.

Point names are ``<step>.<when>``: ``ingest.after_raw_commit``, ``train.after_checkpoint``, ...
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "CLM_FAULT_AT"
MODE_ENV = "CLM_FAULT_MODE"

_reached: Counter[str] = Counter()


class InjectedFault(RuntimeError):
    """Raised at a fault point under ``CLM_FAULT_MODE=raise``."""


def _armed(name: str, hit: int) -> bool:
    for spec in os.environ[ENV].split(","):
        point, _, nth = spec.strip().partition("@")
        if point == name and hit == (int(nth) if nth else 1):
            return True
    return False


def fault_point(name: str) -> None:
    """Die here when ``$CLM_FAULT_AT`` says so (see the module docstring); otherwise do nothing."""
    if ENV not in os.environ:
        return
    _reached[name] += 1
    if not _armed(name, _reached[name]):
        return
    if os.environ.get(MODE_ENV) == "raise":
        raise InjectedFault(f"fault injected at {name}")
    sys.stderr.write(f"clm: fault injected at {name}: SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
