"""The slot server: one model version behind an OpenAI-style HTTP API.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/feedback``,
``GET /healthz``, ``GET /metrics``. Errors have OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, so the official clients raise ``BadRequestError`` / ``NotFoundError`` with clm's message. A response
names the exact version in ``model`` (``<name>/<version>``), ``system_fingerprint`` and the ``x-clm-version``
header, and its id names the slot (``cmpl-<slot>-...``) so the router can send feedback back to it.

Every ``/v1/*`` request passes, in order: the metrics; the API key check (:mod:`~clm_lib.serving.keys`:
``Authorization: Bearer clm_...`` with the ``infer`` scope, or ``feedback`` for ``/v1/feedback``; 401 without a
valid key where ``serving.require_api_key`` asks for one, 403 without the scope); the body limit
(``serving.max_body_bytes``, 413). Bad input is a 4xx whose message repeats at most a short excerpt of it.

Generation runs in one worker thread: requests queue instead of fighting over the CPU, while health checks and
metrics stay answered on the event loop. The queue holds at most ``serving.max_queued`` requests; one more is a
429 with ``Retry-After``. Feedback is stored from a second worker thread (it writes clm's database and, for a
correction, the quarantine table), so it never waits behind generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from clm_lib.config import ClmConfig
from clm_lib.errors import TrainingError
from clm_lib.serving.feedback import DuplicateFeedback, FeedbackSink, ResponseLog, Served
from clm_lib.serving.guards import BodyLimit, error_body, excerpt, send_json
from clm_lib.serving.keys import ANONYMOUS, KeyCache
from clm_lib.serving.metrics import SlotMetrics
from clm_lib.serving.model import Completion, ServedModel
from clm_lib.serving.schemas import ChatRequest, CompletionRequest, FeedbackRequest

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    # A value error is clm's own words; for a union (chat content: a string or parts) it beats "not a string".
    err = next((e for e in errors if e.get("type") == "value_error"), errors[0])
    # Union branches ("str", "list[_TextPart]") are pydantic's names, not fields the client sent.
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "str") and "[" not in str(p)]
    if err.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})", None
    if not loc and err.get("type") in ("missing", "model_attributes_type", "dict_type"):
        return "the request body must be a JSON object (sent with Content-Type: application/json)", None
    msg = err["msg"].removeprefix("Value error, ")
    return (f"{'.'.join(loc)}: {msg}" if loc and not msg.startswith(f"{loc[0]}:") else msg), (loc[0] if loc else None)


class _Metered:
    """ASGI middleware: count and time every request (pure ASGI: no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: SlotMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight.labels(**self.metrics.labels).inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.labels(**self.metrics.labels).dec()
            self.metrics.observe(scope["path"], status[0], time.perf_counter() - t0)


class _Authenticated:
    """ASGI middleware: who sends each ``/v1/*`` request, checked before its body is read."""

    def __init__(self, app, keys: KeyCache, required: bool):
        self.app, self.keys, self.required = app, keys, required

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        caller = None
        if token.startswith("clm_"):
            # A clm key is checked even where none is required: a revoked key must stop working everywhere.
            try:
                if self.keys.fresh(token):
                    caller = self.keys.lookup(token)
                else:
                    caller = await asyncio.to_thread(self.keys.lookup, token)
            except SQLAlchemyError as exc:
                log.error("cannot check an API key: %s", type(exc).__name__)
                message = f"cannot check the API key: clm's database did not answer ({type(exc).__name__})"
                return await send_json(send, 500, error_body(500, message))
            if caller is None:
                return await self._refuse(send, 401, "the API key is unknown or revoked", "invalid_api_key")
        elif self.required:
            message = "an API key is required: Authorization: Bearer clm_... (an operator creates one: clm keys create)"
            return await self._refuse(send, 401, message, "invalid_api_key")
        else:
            caller = ANONYMOUS
        needed = "feedback" if scope["path"] == "/v1/feedback" else "infer"
        if needed not in caller.scopes:
            message = f"the API key of {caller.owner} lacks the {needed!r} scope (it has: {', '.join(caller.scopes)})"
            return await self._refuse(send, 403, message, "insufficient_scope")
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send, status: int, message: str, code: str):
        await send_json(send, status, error_body(status, message, code=code), [(b"www-authenticate", b"Bearer")])


def _prompt_param(body) -> str:
    return "prompt" if isinstance(body, CompletionRequest) else "messages"


def create_app(cfg: ClmConfig, model: ServedModel, *, slot: str, host: str | None = None) -> FastAPI:
    """The API of one slot serving ``model``, bound to ``host`` (default ``serving.host``), which decides
    whether API keys are required when ``serving.require_api_key`` does not say."""
    limits = cfg.serving
    metrics = SlotMetrics(model=model.name, version=model.version, slot=slot)
    responses = ResponseLog(limits.remember_responses)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"clm-generate-{slot}")
    feedback_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"clm-feedback-{slot}")
    state = {"ready": False, "started": time.time(), "served": 0, "queued": 0}
    names = {model.name, f"{model.name}/{model.version}"}
    fingerprint = f"{model.name}/{model.version}"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sink = FeedbackSink(cfg, slot)
        app.state.feedback = sink

        async def flush_now_and_then():
            while True:
                await asyncio.sleep(min(limits.feedback_flush_s, 5.0))
                await asyncio.get_running_loop().run_in_executor(feedback_worker, sink.flush_if_due)

        flusher = asyncio.create_task(flush_now_and_then())
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            flusher.cancel()
            feedback_worker.shutdown(wait=True)
            sink.close()
            worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="clm serving", version=model.version, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    # Added innermost first: metrics see every answer, keys are checked before the body is read.
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    keys = KeyCache(cfg.database_url, limits.api_key_cache_s)
    app.add_middleware(_Authenticated, keys=keys, required=limits.api_key_required(host))
    app.add_middleware(_Metered, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        body = error_body(exc.status, exc.message, exc.param, exc.code)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return JSONResponse(error_body(400, message, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) else None
        return JSONResponse(error_body(exc.status_code, message or str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        body = error_body(500, f"internal error in slot {slot} ({type(exc).__name__}); see the slot's log")
        return JSONResponse(body, status_code=500)

    def _check(body, prompt: str) -> dict[str, Any]:
        if body.model not in names:
            raise ApiError(
                404,
                f"the model {excerpt(body.model)!r} does not exist here; this server serves {model.name!r} "
                f"(version {model.version}, also addressable as {fingerprint!r})",
                param="model",
                code="model_not_found",
            )
        if not prompt.strip():
            raise ApiError(400, "the prompt must not be empty", param=_prompt_param(body))
        if len(prompt) > limits.max_prompt_chars:
            raise ApiError(400, f"the prompt is {len(prompt)} characters; the limit is {limits.max_prompt_chars}")
        max_tokens = body.max_tokens or limits.default_max_tokens
        if max_tokens > limits.max_tokens_limit:
            raise ApiError(
                400, f"max_tokens must be at most {limits.max_tokens_limit}, got {max_tokens}", param="max_tokens"
            )
        temperature = limits.default_temperature if body.temperature is None else body.temperature
        return {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": body.top_p or 1.0,
            "stop": body.stops,
            "seed": body.seed,
            "task": body.task,
        }

    async def _generate(prompt: str, params: dict[str, Any]) -> Completion:
        if not state["ready"]:
            raise ApiError(503, f"slot {slot} is not serving (starting or stopping)")
        if state["queued"] >= limits.max_queued:
            raise ApiError(
                429,
                f"slot {slot} is busy: {state['queued']} requests are being answered or waiting; retry shortly",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        state["queued"] += 1
        job = worker.submit(lambda: model.complete(prompt, **params))
        # Released when the work is really done (or dropped before it started), not when a client gives up.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(_release))
        try:
            return await asyncio.wrap_future(job)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="max_tokens") from None
        except TrainingError as exc:  # e.g. per-task adapters without a router, and no metadata.task given
            raise ApiError(400, str(exc), param="metadata") from None

    def _release() -> None:
        state["queued"] -= 1

    def _finish(kind: str, prompt: str, body, comp: Completion) -> tuple[str, int]:
        rid = f"{kind}-{slot}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        responses.add(Served(rid, prompt, comp.text, model.version, body.task, created))
        metrics.tokens.labels(**metrics.labels).inc(comp.completion_tokens)
        state["served"] += 1
        return rid, created

    def _usage(comp: Completion) -> dict[str, int]:
        total = comp.prompt_tokens + comp.completion_tokens
        return {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens, "total_tokens": total}

    def _headers() -> dict[str, str]:
        return {"x-clm-version": model.version, "x-clm-slot": slot}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        params = _check(body, body.text)
        comp = await _generate(body.text, params)
        rid, created = _finish("cmpl", body.text, body, comp)
        choice = {"index": 0, "text": comp.text, "logprobs": None, "finish_reason": comp.finish_reason}
        content = {
            "id": rid, "object": "text_completion", "created": created, "model": fingerprint,
            "system_fingerprint": fingerprint, "choices": [choice], "usage": _usage(comp),
        }  # fmt: skip
        return JSONResponse(content, headers=_headers())

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        params = _check(body, body.text)
        comp = await _generate(body.text, params)
        rid, created = _finish("chatcmpl", body.text, body, comp)
        message = {"role": "assistant", "content": comp.text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": comp.finish_reason}
        content = {
            "id": rid, "object": "chat.completion", "created": created, "model": fingerprint,
            "system_fingerprint": fingerprint, "choices": [choice], "usage": _usage(comp),
        }  # fmt: skip
        return JSONResponse(content, headers=_headers())

    @app.get("/v1/models")
    async def models():
        created = int(state["started"])
        data = [{"id": n, "object": "model", "created": created, "owned_by": "clm"} for n in sorted(names)]
        return JSONResponse({"object": "list", "data": data}, headers=_headers())

    def _check_feedback(body: FeedbackRequest) -> None:
        caps = {"correction": limits.feedback_max_correction_chars, "comment": limits.feedback_max_comment_chars}
        for name, cap in caps.items():
            value = getattr(body, name)
            if value is not None and len(value) > cap:
                raise ApiError(400, f"the {name} is {len(value)} characters; the limit is {cap}", param=name)
        if body.correction is not None and not body.correction.strip():
            raise ApiError(400, "the correction must not be empty (leave it out to only rate)", param="correction")

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request):
        served = responses.get(body.response_id)
        if served is None:
            raise ApiError(
                404,
                f"no response {body.response_id!r} on slot {slot}: unknown, or older than the last "
                f"{limits.remember_responses} answers",
                param="response_id",
                code="response_not_found",
            )
        task = body.task or served.task
        if task is not None and task not in cfg.data.tasks:
            known = excerpt(", ".join(cfg.data.tasks))
            raise ApiError(400, f"unknown task {excerpt(task, 100)!r}; known tasks: {known}", param="task")
        _check_feedback(body)
        caller = request.scope.get("state", {}).get("caller", ANONYMOUS)
        sink = app.state.feedback
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                feedback_worker,
                lambda: sink.record(
                    served, body.rating, correction=body.correction, task=task, comment=body.comment, caller=caller
                ),
            )
        except DuplicateFeedback:
            raise ApiError(
                409, f"response {served.id} already has a feedback; send one per answer",
                param="response_id", code="feedback_exists",
            ) from None  # fmt: skip
        metrics.feedback.labels(**metrics.labels).observe(body.rating)
        content = {
            "object": "feedback", "id": outcome.feedback_id, "response_id": served.id, "rating": body.rating,
            "model_version": served.version, "status": outcome.status,
            "training_example": outcome.training_example, "note": outcome.note,
        }  # fmt: skip
        return JSONResponse(content, headers=_headers())

    @app.get("/healthz")
    async def healthz():
        body = {
            "status": "ok" if state["ready"] else "unavailable",
            "ready": state["ready"],
            "model": model.name,
            "version": model.version,
            "slot": slot,
            "uptime_s": round(time.time() - state["started"], 3),
            "served": state["served"],
        }
        return JSONResponse(body, status_code=200 if state["ready"] else 503, headers=_headers())

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
