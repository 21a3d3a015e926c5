"""How a v1 route turns a reporting function's refusals into answers: an unknown thing is a 404 naming it, a filter
that cannot be applied a 422 naming the field, in the shape of FastAPI's own validation errors (so a client reads
both alike). A store that cannot be read is left to the app's handler (503)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException

from clm_lib.reporting.params import BadFilter, NotFound

T = TypeVar("T")


def unprocessable(where: str, field: str, message: str) -> HTTPException:
    """A 422 naming ``field`` of the request's ``where`` (query, body, path)."""
    return HTTPException(422, [{"loc": [where, field], "msg": message, "type": "value_error"}])


def answer(
    call: Callable[[], T],
    *,
    not_found: tuple[type[Exception], ...] = (NotFound,),
    bad_filter: tuple[type[Exception], ...] = (BadFilter,),
) -> T:
    """``call()``; ``not_found`` exceptions become 404s, ``bad_filter`` ones (each with a ``field``) 422s."""
    try:
        return call()
    except not_found as exc:
        raise HTTPException(404, str(exc)) from None
    except bad_filter as exc:
        raise unprocessable("query", exc.field, str(exc)) from None  # type: ignore[attr-defined]
