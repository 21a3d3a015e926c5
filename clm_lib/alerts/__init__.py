"""Alerts that reach people: rows deduplicated per cause (:mod:`.core`), delivered to e-mail, a webhook or Apprise
with rate limits and retries (:mod:`.delivery`), configured in the ``alerts:`` section (:mod:`.config`)."""

from clm_lib.alerts.core import (
    KINDS,
    AlertNotFound,
    AlertView,
    Link,
    acknowledge,
    raise_alert,
    record_alert,
    resolve,
    resolve_cause,
)

__all__ = ["KINDS", "AlertNotFound", "AlertView", "Link", "acknowledge", "raise_alert", "record_alert", "resolve",
           "resolve_cause"]  # fmt: skip
