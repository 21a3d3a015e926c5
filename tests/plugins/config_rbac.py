"""What tests/plugins/test_rbac.py sends to the configuration routes and screens, and what an allowed call changes.

Each allowed save changes ``gate.max_task_drop`` to a value no revision before it holds (the live number + 1), and
each revert goes back one revision, so every allowed call makes a new revision whatever the order of the matrix."""

from __future__ import annotations

import json


def _live(cfg) -> int:
    from clm_lib.config_store import live_revision
    from clm_lib.db import session_scope

    with session_scope(cfg.database_url) as s:
        return live_revision(s, cfg).number


def seed(cfg) -> None:
    """Revisions 1 and 2, so a revert has somewhere to go."""
    from clm_lib.config_store import commit_change
    from clm_lib.db import session_scope

    with session_scope(cfg.database_url) as s:
        commit_change(s, file_cfg=cfg, changes={"gate.max_task_drop": 2.0}, base_revision=1, actor="test",
                      reason="rbac seed")  # fmt: skip


def rest_body(cfg, path: str, reason: str) -> dict | None:
    live = _live(cfg)
    if path.endswith("/preview"):
        return {"changes": {"gate.max_task_drop": 0.5}}
    if path.endswith("/revert"):
        return {"to": live - 1, "base_revision": live, "reason": reason}
    if path == "/v1/config":
        return {"changes": {"gate.max_task_drop": live + 1.0}, "base_revision": live, "reason": reason}
    return None


def form(cfg, path: str) -> dict[str, str]:
    live = _live(cfg)
    if path.endswith("/preview"):
        return {"f:gate.max_task_drop": "0.5"}
    if path.endswith("/revert"):
        return {"to": str(live - 1), "base_revision": str(live)}
    return {"changes": json.dumps({"gate.max_task_drop": live + 1.0}), "base_revision": str(live)}


def expected_change(path: str) -> set[str]:
    """Tables an allowed POST changes: none for a preview; a revision and its audit entry otherwise."""
    return set() if path.endswith("/preview") else {"config_revisions", "audit_log"}
