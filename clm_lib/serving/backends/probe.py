"""Talking to a slot over HTTP on a backend's behalf: the smoke test, and reading an error's message."""

from __future__ import annotations

import httpx

from clm_lib.errors import ServingError


def smoke(http: httpx.Client, url: str, model: str, version: str | None, slot: str) -> None:
    """One short completion straight to a slot; raises ``ServingError`` unless it is a well-formed answer."""
    body = {"model": model, "prompt": "smoke test: my router does not connect", "max_tokens": 4, "temperature": 0}
    try:
        resp = http.post(f"{url}/v1/completions", json=body, timeout=60.0)
    except httpx.HTTPError as exc:
        raise ServingError(f"smoke test of slot {slot}: no answer ({type(exc).__name__}: {exc})") from None
    if resp.status_code != 200:
        raise ServingError(f"smoke test of slot {slot}: HTTP {resp.status_code}: {error_message(resp)}")
    try:
        data = resp.json()
        text, served = data["choices"][0]["text"], data["model"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ServingError(f"smoke test of slot {slot}: malformed answer {resp.text[:200]!r}") from None
    if not isinstance(text, str) or (version and served != f"{model}/{version}"):
        raise ServingError(f"smoke test of slot {slot}: expected {model}/{version}, got {served!r}")


def error_message(resp: httpx.Response) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code} {resp.text[:200]}"
