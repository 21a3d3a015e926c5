"""clm's REST API app: version 1 under ``/clm/api/v1`` (:mod:`clm_api.v1`), its OpenAPI document and docs page,
and the unversioned routes of before (deprecated aliases of the same functions).

Auth is Airflow's (``airflow.api_fastapi.core_api.security``, see :mod:`clm_api.deps`), so it follows the
configured auth manager (FAB roles, or the simple one) and accepts the same JWT as Airflow's REST API
(``Authorization: Bearer``, or the UI's ``_token`` cookie): no token is a 401; reading needs view access to the UI
and to DAGs (Viewer and above); changing anything needs the right to trigger the clm DAG that does the same
(FAB: User, Op, Admin). Nothing answers anonymously, the OpenAPI document and the docs page included.

Errors the caller can act on come back as 4xx with ``{"detail": ...}``: 404 names the unknown id or version, 422
the field (and repeats at most a short excerpt of what was sent), 409 a conflict with the state, 503 a store
that cannot be read (which one, since when). Every request resolves clm's config as the tasks do
(:func:`clm_lib.airflow.settings.resolve_config`), so the API reads the stores the pipeline writes to.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clm_api.deps import OPERATE, READ, ActorDep, ConfigDep, PageParams
from clm_api.v1 import deployments as v1_deployments
from clm_lib.errors import ClmError, DeployError, ServingError
from clm_lib.reporting.stores import StoreDown
from clm_lib.serving.guards import excerpt

log = logging.getLogger(__name__)

RollbackRequest = v1_deployments.RollbackRequest
MAX_ERRORS = 20
"""Validation errors listed per answer: a request with thousands of bad fields gets the first ones."""
DOCS = "/v1/docs"
OPENAPI = "/v1/openapi.json"
# Swagger UI as Flask-AppBuilder ships it (5.x: renders OpenAPI 3.1), served from the installed package: no CDN.
_SWAGGER = Path(find_spec("flask_appbuilder").origin).resolve().parent / "static" / "appbuilder"
SWAGGER_ASSETS = {"swagger-ui-bundle.js": _SWAGGER / "js" / "swagger-ui-bundle.js",
                  "swagger-ui.css": _SWAGGER / "css" / "swagger" / "swagger-ui.css"}  # fmt: skip


def _status(exc: ClmError) -> int:
    """409: the request conflicts with the state (no previous version, busy, ...); 503: serving or a store cannot
    be reached."""
    if isinstance(exc, DeployError):
        return 409
    if isinstance(exc, ServingError | StoreDown):
        return 503
    return 500


def _short(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error without the echo of what was sent, beyond a short excerpt."""
    out = {"loc": list(error.get("loc", ())), "msg": excerpt(error.get("msg", ""), 300), "type": error.get("type")}
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        out["input"] = excerpt(value, 80) if isinstance(value, str) else value
    return out


def create_app() -> FastAPI:
    from clm_api import v1

    app = FastAPI(
        title="clm API",
        version="1",
        description=(
            "Deployments, serving, rollback, the audit log, version reports, the feedback review queue, serving "
            "API keys and data. Authenticate as for Airflow's API: `Authorization: Bearer <JWT from POST "
            "/auth/token>`, or the Airflow UI's session cookie. Reading needs the Viewer role; changes need the "
            "right to trigger the clm DAG that makes the same change, and land in clm's audit log."
        ),
        # FastAPI's own /docs and /openapi.json would answer without a login: served below behind READ instead.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(v1.router())

    @app.exception_handler(ClmError)
    async def _clm_error(request: Request, exc: ClmError) -> JSONResponse:
        status = _status(exc)
        if status >= 500:
            log.warning("clm API %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": excerpt(str(exc), 600)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = [_short(e) for e in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            detail.append({"loc": [], "msg": f"... and {len(errors) - MAX_ERRORS} more errors", "type": "too_many"})
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if not isinstance(exc.detail, str) else excerpt(exc.detail, 600)
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))  # fmt: skip

    _docs(app)
    _deprecated(app)
    return app


def _docs(app: FastAPI) -> None:
    """The OpenAPI document and the Swagger UI page, for signed-in readers only."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )  # fmt: skip
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

    @app.get(OPENAPI, dependencies=READ, include_in_schema=False)
    def openapi_json(request: Request) -> JSONResponse:
        # Airflow mounts this app at /clm/api: name that base, so "Try it out" calls the right address.
        root = request.scope.get("root_path", "").rstrip("/")
        return JSONResponse(document() | ({"servers": [{"url": root}]} if root else {}))

    @app.get(DOCS, dependencies=READ, include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI}",
            title="clm API v1",
            swagger_js_url=f"{root}{DOCS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS}/favicon.svg",
        )

    @app.get(DOCS + "/{asset}", dependencies=READ, include_in_schema=False)
    def docs_asset(asset: str) -> FileResponse:
        if asset == "favicon.svg":
            return FileResponse(Path(__file__).resolve().parents[1] / "clm_ui" / "static" / "icon.svg")
        path = SWAGGER_ASSETS.get(asset)
        if path is None or not path.is_file():
            raise HTTPException(404, f"no docs asset {excerpt(asset, 40)!r}")
        return FileResponse(path)


def _deprecated(app: FastAPI) -> None:
    """The routes of before v1, kept for the README's and users' scripts (``POST /clm/api/rollback``): the same
    functions as v1, marked deprecated in the OpenAPI document."""

    @app.get("/deployments", dependencies=READ, deprecated=True, tags=["deprecated"])
    def deployments(cfg: ConfigDep, limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        """Use ``GET /v1/deployments``."""
        page = v1_deployments.deployment_page(cfg, PageParams(offset=0, limit=limit))
        return {"deployments": page["items"]}

    @app.get("/deployments/{deployment_id}", dependencies=READ, deprecated=True, tags=["deprecated"])
    def deployment(cfg: ConfigDep, deployment_id: v1_deployments.DeploymentId) -> dict[str, Any]:
        """Use ``GET /v1/deployments/{deployment_id}``."""
        return v1_deployments.deployment_detail(cfg, deployment_id)

    @app.get("/serving", dependencies=READ, deprecated=True, tags=["deprecated"])
    def serving(cfg: ConfigDep) -> dict[str, Any]:
        """Use ``GET /v1/serving``."""
        from clm_lib.deploy.state import serving_state

        return serving_state(cfg)

    @app.get("/audit/verify", dependencies=READ, deprecated=True, tags=["deprecated"])
    def audit_verify(cfg: ConfigDep) -> dict[str, Any]:
        """Use ``GET /v1/audit/verify``."""
        from clm_lib.reporting.audit import verify_status

        return verify_status(cfg).to_dict()

    @app.post("/rollback", dependencies=OPERATE, deprecated=True, tags=["deprecated"])
    def rollback(cfg: ConfigDep, body: RollbackRequest, actor: ActorDep) -> dict[str, Any]:
        """Use ``POST /v1/rollback``."""
        return v1_deployments.do_rollback(cfg, body, actor)
