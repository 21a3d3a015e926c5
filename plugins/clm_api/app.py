"""The routes of clm's REST API, each a thin call into :mod:`clm_lib.deploy`.

Auth is Airflow's (``airflow.api_fastapi.core_api.security``), so it follows the configured auth manager (FAB
roles, or the simple one) and accepts the same JWT as Airflow's REST API (``Authorization: Bearer``, or the UI's
``_token`` cookie): no token is a 401; reading needs view access to the UI and to DAGs (Viewer and above);
rolling back needs the right to trigger ``clm_rollback`` (FAB: User, Op, Admin), the DAG that does the same.
Errors the caller can act on come back as 4xx with ``{"detail": "<what is wrong and what to do>"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from clm_lib.config import load_config
from clm_lib.errors import ClmError, DeployError, ServingError

log = logging.getLogger(__name__)

READ = [Depends(requires_access_view(AccessView.WEBSITE)), Depends(requires_access_dag("GET"))]
ROLLBACK = [Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id="clm_rollback"))]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: str | None = Field(default=None, pattern=r"^[0-9]+$", max_length=32)
    """Version to roll back to; default: the previous champion (or the champion, while a promotion runs)."""
    reason: str = Field(default="", max_length=2000)
    """Why: kept in the audit log with the caller's name."""


def _status(exc: ClmError) -> int:
    """409: the request conflicts with the state (no previous version, busy, ...); 503: serving is unreachable."""
    if isinstance(exc, DeployError):
        return 409
    if isinstance(exc, ServingError):
        return 503
    return 500


def create_app() -> FastAPI:
    app = FastAPI(
        title="clm API",
        description="Deployments, serving state and rollback of clm's model. Authenticate as for Airflow's API.",
        # No /docs or /openapi.json: they would be the only routes answering without a login (docs/deploy.md).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(ClmError)
    async def _clm_error(request: Request, exc: ClmError) -> JSONResponse:
        status = _status(exc)
        if status >= 500:
            log.warning("clm API %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/deployments", dependencies=READ)
    def deployments(limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        """The latest promotions and rollbacks, newest first."""
        from clm_lib.db import session_scope
        from clm_lib.deploy import history

        with session_scope(load_config().database_url) as s:
            return {"deployments": [history.as_dict(d) for d in history.recent(s, limit)]}

    @app.get("/deployments/{deployment_id}", dependencies=READ)
    def deployment(deployment_id: int) -> dict[str, Any]:
        """One deployment with every step it took."""
        from clm_lib.db import session_scope
        from clm_lib.db.models import Deployment
        from clm_lib.deploy import history

        with session_scope(load_config().database_url) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise HTTPException(404, f"no deployment #{deployment_id}")
            return history.as_dict(dep, history.events_of(s, deployment_id))

    @app.get("/serving", dependencies=READ)
    def serving() -> dict[str, Any]:
        """The aliases, the promotion under way, and what each slot serves (when serving is configured)."""
        from clm_lib.deploy.state import serving_state

        return serving_state(load_config())

    @app.post("/rollback", dependencies=ROLLBACK)
    def rollback(body: RollbackRequest, user: GetUserDep) -> dict[str, Any]:
        """Put the previous champion (or ``to_version``) on all traffic and make it champion."""
        from clm_lib.deploy.rollback import rollback as do_rollback

        result = do_rollback(load_config(), body.to_version, actor=f"airflow:{user.get_name()}", reason=body.reason)
        return result.as_dict()

    return app
