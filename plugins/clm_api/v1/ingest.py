"""Pushed ingestion: ``POST /clm/api/v1/ingest``, one micro-batch per POST (:mod:`clm_lib.data.push`).

The body is a JSON array (``application/json``), NDJSON (``application/x-ndjson``), CSV (``text/csv``) or one file
uploaded as ``multipart/form-data`` (its format from its name: ``.json``, ``.jsonl``/``.ndjson``, ``.csv``).
Callers: an Airflow user who may trigger ``clm_ingest`` (its JWT, as every clm route), or a clm API key with the
``ingest`` scope (``Authorization: Bearer clm_...``). A body over ``data.webhook.max_body_bytes`` is a 413, whether
it declares its length or not (it is counted as it is read); other content types are 415; a body that is not JSON
at all is 422, while a malformed line of NDJSON is one quarantined record. ``Idempotency-Key`` makes a retried POST
answer what the first one did (``Idempotent-Replayed: true``), ingesting nothing; reused with another body: 409.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from starlette.datastructures import UploadFile

from clm_api.deps import ConfigDep, config
from clm_api.v1.answers import unprocessable
from clm_lib.data import push as pushing
from clm_lib.data.push import PushResult
from clm_lib.serving.keys import KeyCache

router = APIRouter(tags=["ingest"])

CONTENT_TYPES = {
    "application/json": "json", "application/x-ndjson": "jsonl", "application/ndjson": "jsonl",
    "application/jsonl": "jsonl", "application/x-jsonlines": "jsonl", "text/csv": "csv",
}  # fmt: skip
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_may_ingest = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id="clm_ingest")
_caches: dict[tuple[str, float], KeyCache] = {}


def _keys(url: str, ttl_s: float) -> KeyCache:
    """One key cache per database: a revoked key is refused within ``serving.api_key_cache_s``, as by the slots."""
    return _caches.setdefault((url, ttl_s), KeyCache(url, ttl_s))


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> str:
    """The audit log's name for who pushes: an API key with the ``ingest`` scope, or an Airflow user allowed to
    trigger ``clm_ingest``. 401 without (valid) credentials, 403 without the right."""
    token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else ""
    if token.startswith("clm_"):
        cfg = await run_in_threadpool(config)
        found = await run_in_threadpool(_keys(cfg.database_url, cfg.serving.api_key_cache_s).lookup, token)
        if found is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if "ingest" not in found.scopes:
            raise HTTPException(403, f"the API key of {found.owner} lacks the 'ingest' scope "
                                     f"(it has: {', '.join(found.scopes)})")  # fmt: skip
        return f"api_key:{found.owner}"
    user = await get_user(request, None, credentials)
    await run_in_threadpool(_may_ingest, request, user)
    return f"airflow:{user.get_name()}"


CallerDep = Annotated[str, Depends(caller)]


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the body is larger than data.webhook.max_body_bytes ({limit} bytes): nothing was "
                              "ingested; send fewer records per POST")  # fmt: skip


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit``: by its declared length, else while it is counted."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request: Request, body: bytes) -> tuple[bytes, str]:
    """The one file of a multipart body (already read and counted), and its format by its name."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except HTTPException as exc:  # more than one file, or a field over its size
        raise unprocessable("body", "file", str(exc.detail)) from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if len(files) != 1:
        raise unprocessable("body", "file", "a multipart body carries exactly one file")
    upload = files[0]
    suffix = PurePosixPath(upload.filename or "").suffix.lower()
    fmt = EXTENSIONS.get(suffix) or CONTENT_TYPES.get((upload.content_type or "").split(";")[0].strip().lower())
    if fmt is None:
        raise HTTPException(415, f"uploaded file {(upload.filename or '')[:100]!r}: clm reads .json, .jsonl, "
                                 ".ndjson and .csv files")  # fmt: skip
    return await upload.read(), fmt


@router.post(
    "/ingest",
    response_model=PushResult,
    responses={409: {"description": "Idempotency-Key reused with another body"}, 413: {"description": "too large"},
               415: {"description": "unsupported content type"}, 503: {"description": "another push is running"}},
)  # fmt: skip
async def ingest(
    request: Request,
    response: Response,
    actor: CallerDep,
    cfg: ConfigDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="Makes a retry a no-op: the same key and body get the first answer back.",
        ),
    ] = None,
) -> PushResult:
    """Ingest the records of the body as one micro-batch, like a landing file: the answer lists what became of each
    record (curated, duplicate, quarantined with the reason) and counts that reconcile."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" and kind not in CONTENT_TYPES:
        raise HTTPException(415, f"content type {kind[:100] or 'none'!r}: send application/json (an array), "
                                 "application/x-ndjson, text/csv or a multipart/form-data file upload")  # fmt: skip
    limit = cfg.data.webhook.max_body_bytes
    body = await _body(request, limit)
    data, fmt = await _upload(request, body) if kind == "multipart/form-data" else (body, CONTENT_TYPES[kind])
    try:
        answer, replayed = await run_in_threadpool(pushing.push, cfg, data, fmt, actor=actor, key=idempotency_key)
    except pushing.TooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except pushing.NotReadable as exc:
        raise unprocessable("body", "records", str(exc)) from None
    except pushing.KeyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except (pushing.Busy, pushing.Failed) as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return answer
