"""A small client of Airflow's public REST API (v2): what the CLI needs to trigger and follow DAG runs.

Plain HTTP, so clm's core talks to a running Airflow without importing it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from clm_lib.errors import ClmError

FINISHED = {"success", "failed"}
RETRIED = {"GET", "PATCH"}
"""Requests sent again after a 5xx: they read, or set a field to a value (unpause), so a second try changes nothing
the first did not. A trigger (POST) is never repeated: it could start two runs."""
RETRY_WAITS = (1.0, 3.0, 6.0)
"""Seconds before each new try. Airflow on its SQLite metadata database answers 500 while a running task holds the
database's write lock for longer than its 5 s busy timeout; that passes within seconds."""


class AirflowAPIError(ClmError):
    """Airflow answered with an error, or did not answer."""


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    timeout: float = 30.0
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True, attempt: int = 0) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if exc.code == 401 and auth and self._token and self.password:
                self._token = None  # expired: get a new one once (a caller's own token cannot be renewed here)
                return self._request(method, path, body, auth=auth)
            if exc.code >= 500 and method in RETRIED and attempt < len(RETRY_WAITS):
                time.sleep(RETRY_WAITS[attempt])
                return self._request(method, path, body, auth=auth, attempt=attempt + 1)
            raise AirflowAPIError(f"Airflow {method} {path} -> HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise AirflowAPIError(f"Airflow at {self.base_url} did not answer {method} {path}: {exc}") from None
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = answer["access_token"]
        return self._token

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def runs(self, dag_id: str, limit: int = 20) -> list[dict]:
        answer = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")
        return answer["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances"
        return self._request("GET", path)["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Until the dag-processor has parsed ``dag_id`` (a fresh install needs a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._request("GET", f"/api/v2/dags/{dag_id}")
                return
            except AirflowAPIError as exc:
                if "404" not in str(exc) or time.monotonic() > deadline:
                    raise AirflowAPIError(f"DAG {dag_id} did not appear within {timeout:.0f}s: {exc}") from None
            time.sleep(2)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 2.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)

    def wait_for_new_run(
        self, dag_id: str, known: set[str], timeout: float, poll: float = 2.0, run_type: str | None = None
    ) -> dict | None:
        """The first run of ``dag_id`` not in ``known`` (of ``run_type`` if given, e.g. ``asset_triggered``),
        or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known and run_type in (None, run.get("run_type")):
                    return run
            time.sleep(poll)
        return None
