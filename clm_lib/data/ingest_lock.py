"""One batch at a time into the lake, whatever its source: landing files, webhook pushes and Kafka polls.

A batch's dedupe reads the curated table (and its content-id index) before the batch's three Delta commits write
it. Two batches holding the same new record that interleave would both find it new, and appends never conflict in
Delta, so it would be curated twice. The lock is clm's database lease (:mod:`clm_lib.deploy.lock`), renewed while
held, so a holder that died frees it within :data:`LEASE_S` (at once for the next taker on its machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clm_lib.config import ClmConfig
from clm_lib.deploy.lock import Lease, deploy_lock

LOCK = "ingest"
LEASE_S = 120.0
"""The lock's lease, renewed while held."""


@contextmanager
def ingest_lock(cfg: ClmConfig, label: str, *, wait_seconds: float) -> Iterator[Lease]:
    """Hold the ingest lock for the block; :class:`~clm_lib.errors.DeployBusyError` after ``wait_seconds``."""
    with deploy_lock(cfg.database_url, label, wait_seconds=wait_seconds, lease_seconds=LEASE_S, name=LOCK) as lease:
        yield lease
