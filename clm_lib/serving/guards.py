"""Limits every serving request goes through before any of it is parsed: body size, and short error messages.

Shared by the slot server (as ASGI middleware) and the router (which reads bodies itself). A body over the limit
is refused with 413 as soon as its ``Content-Length`` says so, or, when it is streamed in chunks, as soon as the
bytes read pass the limit: memory held per request stays bounded either way.
"""

from __future__ import annotations

import json

EXCERPT_CHARS = 200
"""Longest piece of a client's input an error message repeats back."""
MESSAGE_CHARS = 600
"""Longest error message: the words around an excerpt or two."""


def excerpt(text: object, limit: int = EXCERPT_CHARS) -> str:
    """``text`` as it is when short, else its start and how much was left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error shape; the message is cut to :data:`MESSAGE_CHARS`, whatever echoed input it holds."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": excerpt(message, MESSAGE_CHARS), "type": kind, "param": param, "code": code}}


async def send_json(send, status: int, obj, headers: list[tuple[bytes, bytes]] = ()) -> None:
    content = json.dumps(obj).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": content})


def too_large(limit: int) -> dict:
    return error_body(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def declared_length(scope) -> int | None:
    """The request's ``Content-Length``, None when absent or not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class BodyLimit:
    """ASGI middleware: read at most ``limit`` bytes of a request body, else answer 413.

    The body is read here, then replayed to the app, which reads it once as usual.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            return await send_json(send, 413, too_large(self.limit), [(b"connection", b"close")])
        body = await read_body(receive, self.limit)
        if body is None:
            return await send_json(send, 413, too_large(self.limit), [(b"connection", b"close")])
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
