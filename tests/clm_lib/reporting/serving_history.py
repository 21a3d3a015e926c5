"""A deployment history made by the real rollout on the in-memory serving backend (tests/clm_lib/deploy/fakes.py),
shared by the serving screen's reporting and view tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from clm_lib.deploy.rollout import rollout
from tests.clm_lib.deploy.fakes import Behaviour, FakeBackend, FakeGolden

FAST_DEPLOY = {
    "CLM__DEPLOY__BAKE_SECONDS": "0.05",
    "CLM__DEPLOY__POLL_SECONDS": "0.05",
    "CLM__DEPLOY__LOCK_WAIT_SECONDS": "2",
    "CLM__DEPLOY__RULES__MIN_REQUESTS": "10",
    "CLM__DEPLOY__RULES__MAX_P95_MS": "500",
}


def closed_ports(n: int = 3) -> list[int]:
    """Ports nothing listens on (bound, then released), so a local backend finds no router or slot there."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def serving_ports_env() -> dict[str, str]:
    router, blue, green = closed_ports()
    return {
        "CLM__SERVING__ROUTER_PORT": str(router),
        "CLM__SERVING__BLUE_PORT": str(blue),
        "CLM__SERVING__GREEN_PORT": str(green),
    }


@dataclass
class History:
    backend: FakeBackend
    v1: str
    v2: str
    v3: str


def promote_two_then_reject_one(cfg, register_version) -> History:
    """v1 and v2 promoted by canary (v2's bakes see too little traffic to judge error rate and latency); v3 is
    rolled back automatically at its first step, its golden-set score 0 far below v2's 90."""
    be = FakeBackend()
    v1 = register_version(cfg)
    rollout(cfg, actor="airflow:clm_promotion", reason="gate passed", backend=be, golden=None)
    v2 = register_version(cfg)
    be.behaviour[v2] = Behaviour(requests_per_poll=3)
    rollout(cfg, actor="airflow:clm_promotion", reason="gate passed", backend=be, golden=None)
    v3 = register_version(cfg)
    rollout(cfg, actor="airflow:clm_promotion", reason="gate passed", backend=be, golden=FakeGolden({v3: 0.0}))
    return History(be, v1, v2, v3)
