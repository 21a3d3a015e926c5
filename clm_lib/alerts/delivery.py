"""Sending open alerts to the configured channels: what is due, rate limits, retries with backoff, every attempt
recorded.

:func:`deliver_pending` is what the ``clm_alerts`` DAG runs every minute. It is handed one *sender* per channel (a
callable taking the alert's :class:`~clm_lib.alerts.core.AlertView`; the Airflow side builds them from notifiers),
so this module never imports Airflow. A sender that raises (server down, timeout, a 500) is a failed attempt,
recorded with its error; the alert is tried again after ``backoff_seconds`` doubled per failure (at most
``max_backoff_seconds``), and after ``max_attempts`` the channel gives up on it (``gave_up``). A channel that fails
once in a run is not tried again in that run. Nothing here raises for a channel's sake: the pipeline never waits on
a notifier.

Rate limit: a channel is sent at most ``rate_limit_per_hour`` alerts in any hour (successful sends counted); what
is over waits for the next run, most severe and oldest first, never dropped. Acknowledged and resolved alerts are
not sent: someone already knows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clm_lib.alerts.config import SEVERITIES, AlertsConfig, severity_rank
from clm_lib.alerts.core import AlertView, view
from clm_lib.db.models import Alert, AlertDelivery, utcnow
from clm_lib.redaction import redact_text

log = logging.getLogger(__name__)

Sender = Callable[[AlertView], None]
MAX_CANDIDATES = 500
"""Open alerts considered per run, most severe and oldest first."""
MAX_ERROR = 2000
SENT, FAILED, GAVE_UP = "sent", "failed", "gave_up"
CHANNELS = ("email", "webhook", "apprise")


@dataclass(frozen=True)
class Due:
    alert_id: int
    channel: str
    attempt: int


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    rate_limited: int = 0
    """Alerts that were due but over a channel's hourly limit (sent on a later run)."""
    no_sender: list[str] = field(default_factory=list)
    """Enabled channels nothing could send through (provider not installed, connection missing)."""

    def summary(self) -> str:
        return (f"{self.sent} sent, {self.failed} failed, {self.gave_up} given up, {self.rate_limited} rate-limited"
                + (f"; no sender for {', '.join(self.no_sender)}" if self.no_sender else ""))  # fmt: skip


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def backoff(cfg: AlertsConfig, failures: int) -> timedelta:
    """The wait after ``failures`` failed attempts."""
    return timedelta(seconds=min(cfg.max_backoff_seconds, cfg.backoff_seconds * 2 ** max(0, failures - 1)))


def pending(session: Session, cfg: AlertsConfig, *, now: datetime | None = None) -> tuple[list[Due], int]:
    """What to send now, per channel in order, and how many more were due but rate-limited."""
    if not cfg.enabled or not cfg.channels():
        return [], 0
    now = _aware(now or utcnow())
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    candidates = list(session.scalars(
        select(Alert).where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None))
        .order_by(Alert.first_seen, Alert.id).limit(MAX_CANDIDATES)
    ))  # fmt: skip
    candidates.sort(key=lambda a: -rank.get(a.severity, 0))  # stable: oldest first within a severity
    history: dict[tuple[int, str], list[AlertDelivery]] = {}
    if candidates:
        rows = session.scalars(select(AlertDelivery).where(AlertDelivery.alert_id.in_([a.id for a in candidates]))
                               .order_by(AlertDelivery.id))  # fmt: skip
        for d in rows:
            history.setdefault((d.alert_id, d.channel), []).append(d)
    due, limited = [], 0
    for channel in cfg.channels():
        floor = severity_rank(cfg.minimum(channel))
        hour_ago = now - timedelta(hours=1)
        sent = select(func.count(AlertDelivery.id)).where(
            AlertDelivery.channel == channel, AlertDelivery.status == SENT, AlertDelivery.at > hour_ago
        )
        budget = cfg.rate_limit_per_hour - (session.scalar(sent) or 0)
        for a in candidates:
            if severity_rank(a.severity) < floor:
                continue
            tried = history.get((a.id, channel), [])
            if any(d.status in (SENT, GAVE_UP) for d in tried):
                continue
            if tried and _aware(tried[-1].at) + backoff(cfg, len(tried)) > now:
                continue
            if budget <= 0:
                limited += 1
                continue
            due.append(Due(a.id, channel, len(tried) + 1))
            budget -= 1
    return due, limited


def record_attempt(session: Session, due: Due, cfg: AlertsConfig, error: str | None, *, now: datetime | None = None):
    """One attempt's outcome: ``sent``; ``failed`` (tried again later); ``gave_up`` (the last one failed)."""
    status = SENT if error is None else GAVE_UP if due.attempt >= cfg.max_attempts else FAILED
    said = None if error is None else redact_text(error)[:MAX_ERROR]
    row = AlertDelivery(alert_id=due.alert_id, channel=due.channel, attempt=due.attempt, status=status, error=said,
                        at=now or utcnow())  # fmt: skip
    session.add(row)
    return row


def deliver_pending(
    database_url: str, cfg: AlertsConfig, senders: dict[str, Sender], *, now: datetime | None = None
) -> DeliveryReport:
    """Send what is due through ``senders`` and record every attempt; see the module's docstring."""
    from clm_lib.db import session_scope

    report = DeliveryReport()
    with session_scope(database_url) as s:
        due, report.rate_limited = pending(s, cfg, now=now)
        alerts = {a.id: view(a) for a in s.scalars(select(Alert).where(Alert.id.in_({d.alert_id for d in due})))}
    report.no_sender = sorted(c for c in cfg.channels() if c not in senders)
    failing: set[str] = set()
    for d in due:
        if d.channel in failing:  # down a moment ago: do not spend this run's time on it again
            continue
        sender = senders.get(d.channel)
        if sender is None:
            error: str | None = f"no sender for channel {d.channel} (provider not installed or connection missing)"
        else:
            try:
                sender(alerts[d.alert_id])
                error = None
            except Exception as exc:  # whatever the notifier raised is this attempt's error, never the run's
                error = f"{type(exc).__name__}: {exc}"
                log.warning("alert %s to %s failed (attempt %s): %s", d.alert_id, d.channel, d.attempt, error)
        with session_scope(database_url) as s:
            status = record_attempt(s, d, cfg, error, now=now).status
        if error is not None:
            failing.add(d.channel)
        setattr(report, status, getattr(report, status) + 1)
    return report


@dataclass
class ChannelState:
    """How one channel's deliveries are going (the Integrations screen)."""

    channel: str
    state: str
    """ok (the newest attempt was sent), failing (it failed), never (not tried yet) or disabled."""
    last_at: datetime | None
    """The newest attempt."""
    last_ok_at: datetime | None
    failing_since: datetime | None
    """The first failed attempt after the newest successful one."""
    last_error: str | None
    """Redacted; escape it where shown."""


def channel_states(session: Session, cfg: AlertsConfig) -> list[ChannelState]:
    """Each channel (enabled or not) with its newest attempts."""
    enabled, out = cfg.channels(), []
    for channel in CHANNELS:
        last = session.scalar(select(AlertDelivery).where(AlertDelivery.channel == channel)
                              .order_by(AlertDelivery.id.desc()).limit(1))  # fmt: skip
        ok = session.scalar(select(AlertDelivery).where(AlertDelivery.channel == channel, AlertDelivery.status == SENT)
                            .order_by(AlertDelivery.id.desc()).limit(1))  # fmt: skip
        since = None
        if last is not None and last.status != SENT:
            since = session.scalar(
                select(func.min(AlertDelivery.at)).where(AlertDelivery.channel == channel,
                                                         AlertDelivery.id > (ok.id if ok else 0))
            )  # fmt: skip
        state = ("disabled" if channel not in enabled else "never" if last is None
                 else "ok" if last.status == SENT else "failing")  # fmt: skip
        error = last.error if last is not None and last.status != SENT else None
        out.append(ChannelState(channel, state, last and _aware(last.at), ok and _aware(ok.at),
                                since and _aware(since), error))  # fmt: skip
    return out
