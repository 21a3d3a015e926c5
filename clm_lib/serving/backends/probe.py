"""Talking to a slot over HTTP on a backend's behalf: the smoke test, and reading an error's message.

clm's own traffic to a slot (the smoke test here, the golden set of :mod:`clm_lib.deploy.golden`) authenticates
like any client where the slot asks for API keys (``serving.require_api_key``; on Kubernetes the pods bind
``0.0.0.0``, so they do): with the key in the environment variable :data:`PROBE_KEY_ENV` of the process that
deploys (the Airflow worker; on Kubernetes, from a Secret). An operator makes it once, scope ``infer``, owned by
:data:`PROBE_OWNER` so the feedback log and metrics tell probes from users::

    clm keys create --owner system:clm-probe --scope infer     # prints clm_<prefix>_<secret> once

The key is never written to a rendered file or a manifest; revoking it (``clm keys revoke``) stops clm's probes
within ``serving.api_key_cache_s``, and the smoke test then fails with a 401 that says where the key comes from.
"""

from __future__ import annotations

import os

import httpx

from clm_lib.errors import ServingError

PROBE_KEY_ENV = "CLM_PROBE_API_KEY"
"""Environment variable holding the serving API key clm's probes send (``Authorization: Bearer``)."""
PROBE_OWNER = "system:clm-probe"
"""The owner to give that key (``clm keys create --owner``)."""


def probe_headers(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of clm's own requests to a slot: the probe key when :data:`PROBE_KEY_ENV` holds one, else none
    (a slot on loopback needs no key). A value that cannot be a key is a ``ServingError``, not a silent 401."""
    key = (os.environ if environ is None else environ).get(PROBE_KEY_ENV, "").strip()
    if not key:
        return {}
    if not key.startswith("clm_") or not key.isascii() or not key.isprintable() or " " in key:
        raise ServingError(f"{PROBE_KEY_ENV} does not hold a serving API key (clm_<prefix>_<secret>); "
                           f"make one with: clm keys create --owner {PROBE_OWNER} --scope infer")  # fmt: skip
    return {"Authorization": f"Bearer {key}"}


def smoke(
    http: httpx.Client, url: str, model: str, version: str | None, slot: str, headers: dict[str, str] | None = None
) -> None:
    """One short completion straight to a slot; raises ``ServingError`` unless it is a well-formed answer.
    ``headers`` default to :func:`probe_headers`."""
    body = {"model": model, "prompt": "smoke test: my router does not connect", "max_tokens": 4, "temperature": 0}
    headers = probe_headers() if headers is None else headers
    try:
        resp = http.post(f"{url}/v1/completions", json=body, headers=headers, timeout=60.0)
    except httpx.HTTPError as exc:
        raise ServingError(f"smoke test of slot {slot}: no answer ({type(exc).__name__}: {exc})") from None
    if resp.status_code in (401, 403):
        raise ServingError(f"smoke test of slot {slot}: HTTP {resp.status_code}: {error_message(resp)}; "
                           f"{_key_hint(headers)}")  # fmt: skip
    if resp.status_code != 200:
        raise ServingError(f"smoke test of slot {slot}: HTTP {resp.status_code}: {error_message(resp)}")
    try:
        data = resp.json()
        text, served = data["choices"][0]["text"], data["model"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ServingError(f"smoke test of slot {slot}: malformed answer {resp.text[:200]!r}") from None
    if not isinstance(text, str) or (version and served != f"{model}/{version}"):
        raise ServingError(f"smoke test of slot {slot}: expected {model}/{version}, got {served!r}")


def _key_hint(headers: dict[str, str]) -> str:
    if "Authorization" not in headers:
        return (
            f"the slot requires an API key and {PROBE_KEY_ENV} is not set in this process: make one with "
            f"`clm keys create --owner {PROBE_OWNER} --scope infer` and set it here (on Kubernetes, from a Secret)"
        )
    return f"the key in {PROBE_KEY_ENV} was refused: it is revoked, unknown to this clm database, or lacks 'infer'"


def error_message(resp: httpx.Response) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code} {resp.text[:200]}"
