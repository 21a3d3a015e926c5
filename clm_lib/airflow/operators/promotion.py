"""PromoteOperator: gate a candidate against the champion; move the alias only if it passes."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.operators.base import ClmBaseOperator


def candidate_version(context: Any) -> str | None:
    """The version to gate: an explicit ``version`` param wins, then the triggering Asset event."""
    params = context.get("params") or {}
    if params.get("version"):
        return str(params["version"])
    events = (context.get("triggering_asset_events") or {}).get(CANDIDATE) or []
    versions = [ev.extra.get("version") for ev in events if ev.extra and ev.extra.get("version")]
    return str(versions[-1]) if versions else None


class PromoteOperator(ClmBaseOperator):
    def execute(self, context: Any) -> dict:
        from clm_lib.deploy.promotion import promote

        self.quiet_libraries()
        result = promote(self.cfg, candidate_version(context), actor=self.actor(context))
        for reason in result.reasons:
            self.log.info("gate: %s", reason)
        self.log.info("champion: %s -> %s", result.champion_before, result.champion_after)
        if not result.passed:
            # Skipped, not failed: the pipeline worked and the gate said no. The UI shows it apart from errors.
            raise AirflowSkipException(
                f"gate failed for version {result.version}; champion stays {result.champion_before}"
            )
        return result.as_dict()
