"""Cross-site request forgery protection for clm's forms, without a session.

The FAB provider's app (``/pluginsv2``) runs Flask-WTF's ``CSRFProtect``, whose token lives in the Flask session.
That session is a signed cookie named ``session`` at path ``/``, and FAB's own app under ``/auth`` keeps its
database session in a cookie of the same name and path: rendering ``csrf_token()`` on a clm page replaces FAB's
cookie and logs the user out of FAB's Security pages (measured on Airflow 3.3.2 / FAB provider 3.10.2: after one
page view ``/auth/users/list/`` answered 302 to the login page instead of 200). So clm's mutating routes are
exempt from ``CSRFProtect`` and checked here instead, statelessly:

1. **A token bound to the user**: an HMAC (the app's ``[api] secret_key``) of the user's id and the time the form
   was rendered. A cross-site page can neither read it from clm's page nor compute it. It expires after
   :data:`MAX_AGE_S`.
2. **Same origin**: a browser names the page that sent a POST in ``Origin`` (or, failing that, ``Referer``);
   it must be this host, or the host of ``[api] base_url`` (behind a proxy that rewrites ``Host``).

The JWT cookie itself is ``SameSite=Lax``, so a modern browser already withholds it from cross-site POSTs;
these checks do not rely on that.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from base64 import urlsafe_b64encode
from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from flask import current_app, request

FIELD = "clm_csrf"
"""Form field that carries the token."""
MAX_AGE_S = 12 * 3600
"""A form is good for this long after the page was rendered (a page left open over a shift)."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def _key() -> bytes:
    secret = current_app.secret_key
    if not secret:
        # Fail closed: without a secret every token would be forgeable.
        raise RuntimeError("the Airflow api-server has no [api] secret_key; clm's forms cannot be protected")
    return (secret if isinstance(secret, bytes) else str(secret).encode()) + b"|clm-form-token"


def _sign(user_id: str, issued: int) -> str:
    digest = hmac.new(_key(), f"{user_id}|{issued}".encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).decode().rstrip("=")


def form_token(user: BaseUser, now: float | None = None) -> str:
    """The token to put in a form rendered for ``user``."""
    issued = int(now if now is not None else time.time())
    return f"{issued}.{_sign(str(user.get_id()), issued)}"


def refusal(user: BaseUser, now: float | None = None) -> str | None:
    """Why this POST must be refused as possibly forged, or None when it comes from clm's own form."""
    origin = _origin_problem()
    if origin:
        return origin
    token = request.form.get(FIELD, "")
    issued, _, signature = token.partition(".")
    # str.isdigit() admits "²" and unbounded lengths, and compare_digest refuses non-ASCII str: a token is a
    # timestamp of ASCII digits and an ASCII signature, anything else is refused before it reaches int() or HMAC.
    if not _TIMESTAMP.fullmatch(issued) or not signature or not signature.isascii():
        return "the form carried no valid security token; reload the page and try again"
    if not hmac.compare_digest(signature, _sign(str(user.get_id()), int(issued))):
        return "the form's security token is not valid for you; reload the page and try again"
    age = (now if now is not None else time.time()) - int(issued)
    if not 0 <= age <= MAX_AGE_S:
        return f"the form is older than {MAX_AGE_S // 3600} hours; reload the page and try again"
    return None


def _origin_problem() -> str | None:
    sender = request.headers.get("Origin")
    if sender is None:
        sender = request.headers.get("Referer")
        if not sender:
            return None  # some privacy settings strip both; the token alone then decides
    netloc = urlsplit(sender).netloc if sender != "null" else ""
    if netloc and netloc.lower() in _own_hosts():
        return None
    return f"the request came from another site ({sender}), not from this Airflow"


def _own_hosts() -> set[str]:
    from airflow.configuration import conf

    hosts = {request.host.lower()}
    base = urlsplit(conf.get("api", "base_url", fallback="") or "").netloc
    if base:
        hosts.add(base.lower())
    return hosts
