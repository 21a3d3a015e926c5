"""The ``alerts:`` section: which channels hear about alerts, from what severity, how often, and how hard to try.

Credentials are never written here: e-mail goes through an Airflow SMTP connection (``smtp_conn_id``), Apprise
through an Airflow Apprise connection (``conn_id``), and a webhook's token comes from an Airflow connection's
password or an environment variable. A URL that carries a user or password is refused, naming the field.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = Severity.__args__  # type: ignore[attr-defined]
"""Lowest first: a channel hears about alerts at or above its minimum."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Channel(_Section):
    enabled: bool = False
    """Deliver alerts through this channel."""
    min_severity: Severity | None = None
    """Only alerts at or above this severity; None: ``alerts.min_severity``."""


class EmailChannel(_Channel):
    """E-mail through the Airflow SMTP provider; host, port, login and TLS come from the connection."""

    to: list[str] = Field(default_factory=list, max_length=50)
    """Recipients (at least one when enabled)."""
    from_email: str | None = Field(default=None, max_length=250)
    """Sender; None: the connection's ``from_email`` extra."""
    smtp_conn_id: str = Field(default="smtp_default", min_length=1, max_length=250)
    """Airflow connection of the SMTP server (the provider's ``smtp`` connection type)."""

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if "@" not in address or len(address) > 250 or any(c in address for c in "\r\n,;"):
                raise ValueError(f"not one e-mail address: {address!r}")
        return v


class WebhookChannel(_Channel):
    """A JSON POST of each alert to a URL (a chat bridge, an incident tool, your own receiver)."""

    url: str | None = Field(default=None, max_length=2000)
    """http(s) URL to POST to; None: the host of ``conn_id``'s connection. Never with a user or password in it."""
    conn_id: str | None = Field(default=None, max_length=250)
    """Airflow connection whose password is sent as ``Authorization: Bearer`` (and whose host is the URL when
    ``url`` is unset)."""
    token_env: str | None = Field(default=None, max_length=250)
    """Environment variable holding the bearer token instead of a connection."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """Connect and read timeout of one POST."""
    max_response_bytes: int = Field(default=65536, ge=0, le=10 * 1024 * 1024)
    """The most of a response body read (kept for the error message); the rest is not read."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry a user or password: put the token in conn_id's connection or token_env")
        return v


class AppriseChannel(_Channel):
    """Slack, Teams, PagerDuty, ... through the Airflow Apprise provider (where it is installed)."""

    conn_id: str = Field(default="apprise_default", min_length=1, max_length=250)
    """Airflow Apprise connection listing the services' URLs (they hold the tokens, so they live there)."""
    tag: str = Field(default="all", max_length=250)
    """Apprise tag(s) of the services to notify."""


class AlertsConfig(_Section):
    """Alert delivery: channels, minimum severity, a rate limit per channel and retries with backoff."""

    enabled: bool = True
    """Deliver alerts at all (they are recorded and shown on the screens either way)."""
    min_severity: Severity = "warning"
    """Alerts below this severity are shown on the screens but sent nowhere."""
    rate_limit_per_hour: int = Field(default=20, ge=1, le=10_000)
    """The most alerts one channel is sent in any hour; the rest wait, most severe first, and are never dropped."""
    max_attempts: int = Field(default=6, ge=1, le=100)
    """Tries per alert and channel before the channel gives up on that alert (recorded as ``gave_up``)."""
    backoff_seconds: float = Field(default=60.0, ge=0, le=86_400)
    """Wait after the first failed try; doubled after each further failure."""
    max_backoff_seconds: float = Field(default=3600.0, ge=0, le=86_400)
    """The longest wait between two tries."""
    email: EmailChannel = Field(default_factory=EmailChannel)
    """E-mail (SMTP provider)."""
    webhook: WebhookChannel = Field(default_factory=WebhookChannel)
    """Generic JSON webhook."""
    apprise: AppriseChannel = Field(default_factory=AppriseChannel)
    """Apprise (Slack, Teams, ...)."""

    @field_validator("email")
    @classmethod
    def _email_has_recipients(cls, v: EmailChannel) -> EmailChannel:
        if v.enabled and not v.to:
            raise ValueError("to: an enabled e-mail channel needs at least one recipient")
        return v

    @field_validator("webhook")
    @classmethod
    def _webhook_has_target(cls, v: WebhookChannel) -> WebhookChannel:
        if v.enabled and not v.url and not v.conn_id:
            raise ValueError("url: an enabled webhook needs a url or a conn_id")
        return v

    def channels(self) -> dict[str, _Channel]:
        """The enabled channels by name."""
        every = {"email": self.email, "webhook": self.webhook, "apprise": self.apprise}
        return {name: c for name, c in every.items() if c.enabled}

    def minimum(self, channel: str) -> str:
        c = self.channels().get(channel)
        return (c.min_severity if c is not None else None) or self.min_severity
