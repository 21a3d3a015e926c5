"""The deploy lock on SQLite and PostgreSQL: exclusive under contention from threads and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import update

from clm_lib.db import get_engine
from clm_lib.db.models import DeployLock, utcnow
from clm_lib.deploy.lock import acquire, current_holder, deploy_lock, holder_id, release, try_acquire
from clm_lib.errors import DeployBusyError


def test_one_holder_at_a_time_and_only_the_holder_releases(db_url):
    assert try_acquire(db_url, "a", 60)
    assert not try_acquire(db_url, "b", 60)
    assert current_holder(db_url) == "a"

    release(db_url, "b")  # not b's to release
    assert not try_acquire(db_url, "b", 60)
    release(db_url, "a")
    assert current_holder(db_url) is None
    assert try_acquire(db_url, "b", 60)


def test_a_dead_holders_lease_runs_out(db_url):
    assert try_acquire(db_url, "crashed", 60)
    with get_engine(db_url).begin() as conn:  # as if its 60 s had passed
        conn.execute(update(DeployLock).values(expires_at=utcnow() - timedelta(seconds=1)))

    assert current_holder(db_url) is None
    assert try_acquire(db_url, "next", 60)
    release(db_url, "crashed")  # its late release must not free the new holder's lock
    assert current_holder(db_url) == "next"


def _held_by_a_child(db_url: str, *, then: str) -> tuple[subprocess.Popen, str]:
    """A child process that takes the lock (a 600 s lease) and then exits without releasing it or sleeps."""
    code = (
        "import os, sys, time\n"
        "from clm_lib.deploy.lock import acquire, holder_id\n"
        "h = holder_id('ingest of a batch')\n"
        # The first call on a new lock name creates its row: the second takes it.
        f"assert acquire({db_url!r}, h, 600, name='ingest') or acquire({db_url!r}, h, 600, name='ingest')\n"
        "print(h, flush=True)\n"
        + ("os._exit(0)\n" if then == "die" else "time.sleep(60)\n")
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return child, child.stdout.readline().strip()


def test_a_holder_whose_process_exited_is_taken_over_at_once(db_url):
    child, holder = _held_by_a_child(db_url, then="die")
    child.wait(timeout=30)
    assert current_holder(db_url, name="ingest") == holder, "its lease (600 s) has not run out"

    mine = holder_id("the retry")
    assert acquire(db_url, mine, 60, name="ingest")
    assert current_holder(db_url, name="ingest") == mine


def test_a_live_holder_or_one_on_another_machine_is_waited_out(db_url):
    child, holder = _held_by_a_child(db_url, then="sleep")
    try:
        assert not acquire(db_url, holder_id("the retry"), 60, name="ingest")
        assert current_holder(db_url, name="ingest") == holder
    finally:
        child.kill()
        child.wait(timeout=30)
    elsewhere = holder.replace(" on ", " on another-host-", 1)  # the same pid, exited, but not on this machine
    with get_engine(db_url).begin() as conn:
        conn.execute(update(DeployLock).where(DeployLock.name == "ingest").values(holder=elsewhere))
    assert not acquire(db_url, holder_id("the retry"), 60, name="ingest")
    assert current_holder(db_url, name="ingest") == elsewhere


def test_a_busy_lock_answers_with_who_holds_it(db_url):
    with deploy_lock(db_url, "promotion of version 7", wait_seconds=1, lease_seconds=60):
        t0 = time.monotonic()
        busy = r"busy: promotion of version 7 \(pid \d+ .*waited 0 s"
        with pytest.raises(DeployBusyError, match=busy), deploy_lock(db_url, "x", wait_seconds=0.2, lease_seconds=60):
            pass  # pragma: no cover - never entered
        assert 0.2 <= time.monotonic() - t0 < 2


def test_a_lock_name_without_a_row_gets_one(db_url):
    assert not try_acquire(db_url, "a", 60, name="other")  # creates the row, then competes on the next try
    assert try_acquire(db_url, "a", 60, name="other")
    assert current_holder(db_url) is None, "the deploy lock is a different row"


def test_racing_threads_never_hold_it_together(db_url):
    inside, most, entries = [0], [0], []
    guard = threading.Lock()
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait()
        for i in range(8):
            with deploy_lock(db_url, f"thread {n}", wait_seconds=60, lease_seconds=60, poll_seconds=0.005):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.002)
                with guard:
                    inside[0] -= 1
                    entries.append((n, i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(entries) == 32 and most[0] == 1


_HOLDER = """
import json, sys, time
from clm_lib.deploy.lock import deploy_lock
url, n = sys.argv[1], sys.argv[2]
for _ in range(5):
    with deploy_lock(url, "process " + n, wait_seconds=60, lease_seconds=60, poll_seconds=0.005):
        begin = time.time()
        time.sleep(0.01)
        end = time.time()
    print(json.dumps([begin, end]), flush=True)
"""


def test_racing_processes_never_hold_it_together(db_url):
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOLDER, db_url, str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0]
    spans = sorted(tuple(json.loads(line)) for out in outputs for line in out.splitlines())
    assert len(spans) == 15
    assert all(prev_end <= begin for (_, prev_end), (begin, _) in pairwise(spans)), spans
