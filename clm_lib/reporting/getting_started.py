"""The Getting started screen: what clm does in five steps, how far this installation has got with each, and the
commands (from the README) to run the demo or bring one's own model and data.

Read-only like the other screens: a fresh install (no database yet) is the state this page is for, so a store that
cannot be read is shown on the page (which one, since when), never an error page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from clm_lib.config import ClmConfig
from clm_lib.db.models import Deployment, DriftReport, Evaluation, IngestionBatch, TrainingRun
from clm_lib.reporting.overview import registry_state
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import StoreDown, missing_sqlite, reading
from clm_lib.reporting.stores import utc as _utc


@dataclass(frozen=True)
class Step:
    """One of the five steps of clm, and how far this installation has got with it."""

    __pydantic_config__ = DOCUMENTED

    number: int
    title: str
    what: str
    done: bool | None
    """None: unknown (a store could not be read)."""
    status: str
    """What this installation has done of it, in one sentence."""
    last_at: datetime | None
    screen: str
    """Path under ``/pluginsv2/clm`` of the screen that shows it."""
    commands: list[str]


@dataclass(frozen=True)
class GettingStarted:
    """The Getting started page: the steps, and the commands of the demo and of a real setup."""

    __pydantic_config__ = DOCUMENTED

    generated_at: datetime
    steps: list[Step]
    problems: list[str]
    """Stores that could not be read, with since when."""
    demo: list[str]
    own_model_and_data: list[str]

    @property
    def next_step(self) -> Step | None:
        """The first step not done yet."""
        return next((s for s in self.steps if not s.done), None)


def build_getting_started(cfg: ClmConfig) -> GettingStarted:
    landing = cfg.landing_uri
    copy = "aws s3 cp my-data.jsonl" if landing.startswith(("s3://", "s3a://")) else "cp my-data.jsonl"
    problems: list[str] = []
    facts: dict[str, tuple] = {}
    missing = missing_sqlite(cfg.database_url)
    try:
        if missing:  # a fresh install: nothing has happened yet, which is known
            raise StoreDown("clm's database", f"there is no database at {missing} yet; `clm init` creates it",
                            datetime.now(UTC))  # fmt: skip
        with reading(cfg.database_url) as s:
            facts["batches"] = s.execute(select(func.count(), func.max(IngestionBatch.started_at))).one()
            facts["curated"] = s.execute(
                select(func.count(), func.coalesce(func.sum(IngestionBatch.rows_curated), 0),
                       func.coalesce(func.sum(IngestionBatch.rows_quarantined), 0),
                       func.max(IngestionBatch.finished_at))
                .where(IngestionBatch.status == "committed")
            ).one()  # fmt: skip
            facts["drift"] = s.execute(
                select(func.count(func.distinct(DriftReport.check_id)), func.max(DriftReport.created_at),
                       func.count(func.distinct(DriftReport.check_id)).filter(DriftReport.retrain_requested))
            ).one()  # fmt: skip
            facts["trained"] = s.execute(
                select(func.count(), func.max(TrainingRun.finished_at)).where(TrainingRun.status == "succeeded")
            ).one()
            facts["evaluated"] = s.execute(select(func.count(), func.max(Evaluation.created_at))).one()
            facts["promoted"] = s.execute(
                select(func.count(), func.max(Deployment.finished_at)).where(Deployment.status == "promoted")
            ).one()
    except StoreDown as exc:
        problems.append(str(exc))
    registry = registry_state(cfg)
    if registry.status == "unreachable":
        problems.append(registry.message)
    known = "batches" in facts or missing is not None

    def fact(key: str) -> tuple:
        return facts.get(key) or (0, None, 0, None)

    n_batches, last_batch = fact("batches")[:2]
    n_committed, curated, quarantined, last_commit = fact("curated")
    n_checks, last_check, n_retrain = fact("drift")[:3]
    n_trained, last_trained = fact("trained")[:2]
    n_evals, _last_eval = fact("evaluated")[:2]
    n_promoted, last_promoted = fact("promoted")[:2]
    champion = registry.champion
    steps = [
        Step(1, "Data arrives", "Files dropped into the landing folder (JSONL, CSV or Parquet with task, prompt, "
             "response) are picked up by the clm_ingest DAG.",
             n_batches > 0 if known else None,
             f"{n_batches} ingestion batch(es)" if n_batches else f"nothing ingested yet: drop files into {landing}",
             _utc(last_batch), "/ingestion",
             [f"{copy} {landing}/", "airflow dags trigger clm_ingest"]),
        Step(2, "Validated and curated", "Each record is checked; bad ones go to quarantine with their reason, the "
             "rest are deduplicated into the curated Delta table.",
             n_committed > 0 if known else None,
             f"{n_committed} committed batch(es): {curated} curated row(s), {quarantined} quarantined"
             if n_committed else "no batch committed yet", _utc(last_commit), "/data", []),
        Step(3, "Drift checked", "After each ingestion the drift monitor compares new data with what the champion "
             "learnt and decides whether to retrain.",
             n_checks > 0 if known else None,
             f"{n_checks} drift check(s), {n_retrain} requested a retraining" if n_checks else "no drift check yet",
             _utc(last_check), "/drift", ["clm drift check"]),
        Step(4, "Model trained and evaluated", "A continual update (LoRA, replay) is trained and scored on every "
             "task learnt so far: the forgetting matrix.",
             n_trained > 0 and n_evals > 0 if known else None,
             f"{n_trained} training run(s) succeeded, {n_evals} evaluation(s)" if n_trained else "no model trained yet",
             _utc(last_trained), "/",
             ["airflow dags trigger clm_continual_training -c '{\"force\": true, \"reason\": \"first model\"}'"]),
        Step(5, "Promoted and serving", "A candidate that passes the gate goes to traffic through a canary, and "
             "rolls back on its own if it breaches a safety rule.",
             (champion is not None or n_promoted > 0) if known or champion else None,
             f"v{champion.version} is champion" if champion
             else (f"{n_promoted} promotion(s)" if n_promoted else "nothing promoted yet"),
             _utc(last_promoted) or (champion.registered_at if champion else None), "/serving",
             ["airflow dags trigger clm_promotion -c '{\"version\": \"1\"}'", "clm deployments"]),
    ]  # fmt: skip
    return GettingStarted(
        generated_at=datetime.now(UTC),
        steps=steps,
        problems=problems,
        demo=["make demo"],
        own_model_and_data=[
            ". .venv/bin/activate",
            "clm init && clm up",
            f"{copy} {landing}/",
            "export CLM_CONFIG=my-clm.yaml   # a copy of include/clm.yaml",
            "#   model.base_path: /models/my-model   (saved with save_pretrained)",
            "#   model.build_if_missing: false",
            "#   data.tasks: [my-task, ...]",
            "export CLM_DATABASE_URL=postgresql://...  MLFLOW_TRACKING_URI=http://...  CLM_DATA_URI=s3://...",
        ],
    )
