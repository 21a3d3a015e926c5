"""Secrets in URLs: a config type that never shows them, and redaction for URLs and free text.

A database URL or an MLflow tracking URI may carry a password (``user:password@``) or a token in its query string.
Config fields holding one are :class:`SecretUrl`: ``str()``, ``repr()`` and ``model_dump(mode="json")`` give the
redacted URL, so a dump, a snapshot, a config hash or a message never contains the secret; the real value comes
only from ``get_secret_value()``, called where a connection is made (``ClmConfig.database_url`` / ``tracking_uri``).
"""

from __future__ import annotations

import re

from pydantic import Secret

MASK = "***"
# Query parameters that carry credentials (psycopg's ``password``, presigned ``X-Amz-Signature``, ``access_token``).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|sig|credential|auth", re.IGNORECASE)
_USERINFO = re.compile(r"(//[^/\s:@'\"]*):[^@\s/'\"]*@")
_QUERY_PARAM = re.compile(r"([?&;]([^=&\s'\"]+)=)([^&\s'\"]*)")


def redact_url(url: str) -> str:
    """``url`` without its password and without the values of credential-like query parameters.

    Uses SQLAlchemy's own rendering (``render_as_string(hide_password=True)``); what SQLAlchemy cannot parse (MLflow's
    ``databricks``, a bare path) goes through :func:`redact_text`. A URL without secrets comes back unchanged, so a
    redacted dump still works where no secret was needed.
    """
    # Imported here: config loading (which declares SecretUrl fields) should not pay for SQLAlchemy.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return redact_text(url)
    secret = {k for k in parsed.query if _SECRET_PARAM.search(k)}
    if not secret and parsed.password is None:
        return url
    parsed = parsed.set(query={k: (MASK if k in secret else v) for k, v in parsed.query.items()})
    # SQLAlchemy percent-encodes the mask in a query string; keep it readable.
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)


def redact_text(text: str) -> str:
    """Every URL password (``//user:secret@``) and credential-like query value in ``text`` replaced by ``***``.

    For messages that may quote a URL: a driver's error, an HTTP client's exception.
    """
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    return _QUERY_PARAM.sub(lambda m: m.group(1) + MASK if _SECRET_PARAM.search(m.group(2)) else m.group(0), text)


class SecretUrl(Secret[str]):
    """A URL that may carry a password or token: shown, logged and dumped redacted (see :func:`redact_url`)."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())
