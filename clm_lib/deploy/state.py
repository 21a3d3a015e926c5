"""What serves now, in one JSON-ready dict: the aliases, the promotion under way, the slots and their weights.

For the REST API and the screens. Serving that cannot be reached is reported in ``serving_error``, not raised:
the aliases and the deployment history are still worth showing when the router is down.
"""

from __future__ import annotations

from typing import Any

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.deploy import history
from clm_lib.deploy.promotion import PREVIOUS
from clm_lib.errors import ServingError
from clm_lib.registry.mlflow_registry import CHALLENGER, CHAMPION, alias_version


def serving_state(cfg: ClmConfig, backend=None) -> dict[str, Any]:
    with session_scope(cfg.database_url) as s:
        active = history.active_deployment(s)
        active = history.as_dict(active) if active is not None else None
    out: dict[str, Any] = {
        "model": cfg.registry.model_name,
        "strategy": cfg.deploy.strategy,
        "aliases": {alias: alias_version(cfg, alias) for alias in (CHAMPION, PREVIOUS, CHALLENGER)},
        "active_deployment": active,
        "slots": None,
        "weights": None,
        "serving_error": None,
    }
    if cfg.deploy.strategy != "alias":
        from clm_lib.deploy.rollout import serving_backend

        try:
            be = serving_backend(cfg, backend)
            out["slots"] = {slot: st.as_dict() for slot, st in be.status().items()}
            out["weights"] = be.weights()
        except ServingError as exc:
            out["serving_error"] = str(exc)
    return out
