"""RollbackOperator: the ``clm_rollback`` DAG's one task, the same :func:`clm_lib.deploy.rollback.rollback` as the
REST route and ``clm rollback``."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from clm_lib.airflow.operators.base import ClmBaseOperator


class RollbackOperator(ClmBaseOperator):
    """Roll back to ``params.to_version`` (default: the previous champion), recording ``params.reason``."""

    def execute(self, context: Any) -> dict:
        from clm_lib.deploy.rollback import rollback
        from clm_lib.errors import DeployError

        self.quiet_libraries()
        params = context.get("params") or {}
        to_version = str(params["to_version"]) if params.get("to_version") else None
        try:
            result = rollback(self.cfg, to_version, actor=self.actor(context), reason=str(params.get("reason") or ""))
        except DeployError as exc:
            raise AirflowFailException(str(exc)) from None  # what to do differs; retrying the same would not help
        how = "warm" if result.warm else "loaded first"
        where = f"all traffic on {result.slot} ({how})" if result.slot else "aliases only"
        self.log.info("rolled back %s -> %s: %s, %.0f ms", result.from_version, result.to_version, where,
                      result.switch_ms)  # fmt: skip
        return result.as_dict()
