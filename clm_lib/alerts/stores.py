"""Stores that stop answering become alerts: MLflow, clm's database, the lake (Kafka, Kubernetes and GPU nodes are
shown on the Integrations screen but are not stores the pipeline keeps state in).

:func:`check_stores` runs the Integrations screen's checks (:func:`clm_lib.reporting.integrations.build_integrations`,
each bounded) from the ``clm_alerts`` DAG, raises ``store_unreachable:<store>`` for each one down (one open alert per
store, counted while it stays down) and resolves it once the store answers again. clm's own database being down is
the one alert that cannot be written there: it is logged, and the failed DAG runs say it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from clm_lib.alerts.core import Link, record_alert, resolve_cause
from clm_lib.config import ClmConfig
from clm_lib.reporting.stores import DATABASE

log = logging.getLogger(__name__)

STORES = {"MLflow": "mlflow", DATABASE: "database", "Data lake": "lake"}
"""The stores among the Integrations screen's rows -> the name in their alert's cause."""
NOT_YET = "yet;"
"""In a check's detail: the store was never created (a fresh install, before ``clm init`` or the first run), which
is not an outage."""
ACTOR = "clm:store-check"


def cause(store: str) -> str:
    return f"store_unreachable:{STORES.get(store, store.lower())}"


@dataclass
class StoreCheck:
    down: dict[str, str] = field(default_factory=dict)
    """Store -> why it does not answer."""
    recovered: list[str] = field(default_factory=list)


def check_stores(cfg: ClmConfig) -> StoreCheck:
    """Check the stores now; raise or resolve their alerts. Never raises."""
    from clm_lib.db import session_scope
    from clm_lib.reporting.integrations import build_integrations

    out = StoreCheck()
    try:
        found = {i.name: i for i in build_integrations(cfg).integrations}
    except Exception:  # the checks catch their own failures; this is a bug, and must not stop delivery
        log.exception("the store checks failed")
        return out
    for store in STORES:
        row = found.get(store)
        if row is None or row.state == "not configured":
            continue
        if row.state == "unreachable" and NOT_YET not in row.detail:
            out.down[store] = row.detail
            record_alert(cfg.database_url, kind="store_unreachable", cause=cause(store), severity="critical",
                         message=f"{store} ({row.address}) does not answer: {row.detail}",
                         links=[Link("Integrations", "/integrations")])  # fmt: skip
            continue
        try:
            with session_scope(cfg.database_url) as s:
                if resolve_cause(s, cause(store), ACTOR, reason=f"{store} answers again") is not None:
                    out.recovered.append(store)
        except Exception:
            log.exception("could not resolve the %s alert", store)
    return out
