"""Airflow notifiers that deliver clm alerts: e-mail (SMTP provider), a JSON webhook, Apprise (Slack, Teams, ...).

Each is a :class:`~airflow.sdk.BaseNotifier` built for one alert and one channel; :func:`senders` turns the
``alerts:`` config into the per-channel callables :func:`clm_lib.alerts.delivery.deliver_pending` takes. They have
no ``template_fields`` and are called through ``notify``, never ``__call__``: an alert's message is pipeline text
(an exception, a reason) and must not be rendered as a Jinja template. Every failure raises, so the delivery loop
records it and retries later; none of them follows a redirect or reads an unbounded response.

The SMTP provider's own ``SmtpNotifier`` renders its fields as templates, so the e-mail notifier calls the
provider's ``SmtpHook`` directly; the Apprise provider's hook drops Apprise's "sent or not" result, so ours asks
Apprise itself, with the services read from the provider's connection as the hook reads them.
"""

from __future__ import annotations

import html
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from clm_lib.alerts.config import AlertsConfig, AppriseChannel, EmailChannel, WebhookChannel
from clm_lib.alerts.core import AlertView

log = logging.getLogger(__name__)

USER_AGENT = "clm-alerts/1"


def subject(alert: AlertView) -> str:
    times = f" (x{alert.count})" if alert.count > 1 else ""
    first_line = alert.message.splitlines()[0] if alert.message else alert.kind
    return f"[clm {alert.severity}] {alert.kind.replace('_', ' ')}: {first_line[:120]}{times}"


def _text(alert: AlertView) -> str:
    links = "\n".join(f"- {link['label']}: {link['href']}" for link in alert.links)
    return (f"{alert.message}\n\ncause: {alert.cause}\nseverity: {alert.severity}\nseen: {alert.count} time(s), "
            f"first {alert.first_seen}, last {alert.last_seen}\n{links}").strip()  # fmt: skip


class AlertEmailNotifier(BaseNotifier):
    """One alert by e-mail through the SMTP provider's hook (host, port, login, TLS: the connection's).

    The hook retries a failed send ``retry_limit`` times (connection extra, default 5) before raising; set it low in
    the alerts connection, as clm retries on its own with backoff."""

    template_fields = ()

    def __init__(self, channel: EmailChannel, alert: AlertView):
        super().__init__()
        self.channel, self.alert = channel, alert

    def notify(self, context: Any) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        body = "<pre>" + html.escape(_text(self.alert)) + "</pre>"
        with SmtpHook(smtp_conn_id=self.channel.smtp_conn_id) as hook:
            hook.send_email_smtp(to=self.channel.to, from_email=self.channel.from_email or hook.from_email,
                                 subject=subject(self.alert), html_content=body)  # fmt: skip


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # a 3xx is an answer, not a new target
        return None


class WebhookError(Exception):
    """The receiver answered with something else than 2xx (its status and the start of its body)."""


class AlertWebhookNotifier(BaseNotifier):
    """One alert as a JSON POST (:meth:`clm_lib.alerts.core.AlertView.payload`): ``timeout_seconds`` to connect and
    to read, at most ``max_response_bytes`` of the answer read, redirects refused, any non-2xx an error."""

    template_fields = ()

    def __init__(self, channel: WebhookChannel, alert: AlertView):
        super().__init__()
        self.channel, self.alert = channel, alert

    def _target(self) -> tuple[str, str | None]:
        url, token = self.channel.url, None
        if self.channel.conn_id:
            from airflow.sdk import Connection

            conn = Connection.get(self.channel.conn_id)
            token = conn.password or None
            url = url or conn.host
        if self.channel.token_env:
            token = os.environ.get(self.channel.token_env) or token
        if not url:
            raise WebhookError(f"no URL: alerts.webhook.url is unset and connection {self.channel.conn_id} has no host")
        return url, token

    def notify(self, context: Any) -> None:
        url, token = self._target()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(self.alert.payload()).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        opener = urllib.request.build_opener(_NoRedirect)
        limit = self.channel.max_response_bytes
        try:
            with opener.open(request, timeout=self.channel.timeout_seconds) as response:
                response.read(limit)
                status = response.status
        except urllib.error.HTTPError as exc:
            said = exc.read(min(limit, 500)).decode("utf-8", "replace") if exc.fp is not None else ""
            raise WebhookError(f"HTTP {exc.code} from the webhook: {said}".strip()) from None
        if not 200 <= status < 300:
            raise WebhookError(f"HTTP {status} from the webhook")


class AlertAppriseNotifier(BaseNotifier):
    """One alert to the services of an Apprise connection; raises when Apprise says none was notified."""

    template_fields = ()

    def __init__(self, channel: AppriseChannel, alert: AlertView):
        super().__init__()
        self.channel, self.alert = channel, alert

    def notify(self, context: Any) -> None:
        import apprise
        from airflow.providers.apprise.hooks.apprise import AppriseHook

        hook = AppriseHook(apprise_conn_id=self.channel.conn_id)
        target = apprise.Apprise()
        hook.set_config_from_conn(conn=hook.get_connection(self.channel.conn_id), apprise_obj=target)
        kind = apprise.NotifyType.FAILURE if self.alert.severity == "critical" else apprise.NotifyType.WARNING
        if not target.notify(body=_text(self.alert), title=subject(self.alert), notify_type=kind,
                             body_format=apprise.NotifyFormat.TEXT, tag=self.channel.tag):  # fmt: skip
            raise RuntimeError(f"Apprise notified none of connection {self.channel.conn_id}'s services")


def apprise_installed() -> bool:
    try:
        import apprise  # noqa: F401
        from airflow.providers.apprise.hooks.apprise import AppriseHook  # noqa: F401
    except ImportError:
        return False
    return True


def senders(cfg: AlertsConfig) -> dict[str, Callable[[AlertView], None]]:
    """A sender per enabled channel whose provider is installed (Apprise is optional: without it the channel has
    no sender, which the delivery records as a failure naming it)."""
    out: dict[str, Callable[[AlertView], None]] = {}
    channels = cfg.channels()
    if "email" in channels:
        out["email"] = lambda a: AlertEmailNotifier(cfg.email, a).notify({})
    if "webhook" in channels:
        out["webhook"] = lambda a: AlertWebhookNotifier(cfg.webhook, a).notify({})
    if "apprise" in channels and apprise_installed():
        out["apprise"] = lambda a: AlertAppriseNotifier(cfg.apprise, a).notify({})
    return out
