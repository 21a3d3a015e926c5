"""clm's own state: one table per thing a person asks about later ("which data made this model?").

Airflow 3 forbids tasks from touching Airflow's metadata DB, so all of this lives in clm's database.
Schema changes go through Alembic (``clm_lib/db/migrations``); a test keeps models and migrations equal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class IngestionBatch(Base):
    """One landing file ingested once. Counts reconcile: rows_in = curated + quarantined + duplicate."""

    __tablename__ = "ingestion_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    source_format: Mapped[str] = mapped_column(String(16))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # running | committed | failed
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_curated: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    task_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quarantine_reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raw_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    curated_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quarantine_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    notes: Mapped[list[Any]] = mapped_column(default=list)
    """What the reader noticed that is not a record problem (blank lines skipped, an empty file)."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ValidationResult(Base):
    """The Great Expectations verdict on one batch."""

    __tablename__ = "validation_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("ingestion_batches.id"), index=True)
    suite: Mapped[str] = mapped_column(String(128))
    success: Mapped[bool]
    evaluated: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    expectations: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    """One continual update: what it read, what started it, what it produced."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | skipped
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    airflow_dag_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    parent_model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    """The MLflow model version registered from this run's output, once registered."""
    base_model: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(32))
    config_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The configuration revision (``config_revisions.number``) live when its DAG run started (migration 0008)."""
    curated_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_curated_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replay_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_rows: Mapped[int] = mapped_column(Integer, default=0)
    replay_rows: Mapped[int] = mapped_column(Integer, default=0)
    tasks: Mapped[list[Any]] = mapped_column(default=list)
    """Tasks in the order they were first learned, up to and including this run."""
    strategies: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Evaluation(Base):
    """All tasks scored after one update: one row of the accuracy matrix R, plus AA and BWT."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    training_run_id: Mapped[str] = mapped_column(ForeignKey("training_runs.id"), index=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tasks: Mapped[list[Any]] = mapped_column(default=list)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """task -> its primary metric (0-100) on its held-out set: exact-match accuracy unless the config chose another."""
    metrics: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    """task -> ``{"primary": name, "values": {metric: 0-100}}``, every task metric (``clm_lib/evaluation/
    stored_metrics.py``). None on evaluations from before metrics could be chosen: their scores are exact match."""
    matrix: Mapped[list[Any]] = mapped_column(default=list)
    """R[i][j]: accuracy on task j after update i, along this model's lineage (None: task not yet seen)."""
    average_accuracy: Mapped[float] = mapped_column(Float)
    backward_transfer: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateDecision(Base):
    """Why a candidate was or was not promoted."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(250))
    model_version: Mapped[str] = mapped_column(String(32), index=True)
    champion_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    passed: Mapped[bool]
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConfigVersion(Base):
    """Every distinct effective configuration a run used, addressable by its hash."""

    __tablename__ = "config_versions"

    config_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only record of every state change a person may be asked to explain.

    Entries form an HMAC chain (``clm_lib/audit.py``): write them with ``audit.record``, check them with
    ``clm audit verify``. On PostgreSQL and SQLite a trigger refuses UPDATE and DELETE (migration 0005).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(250))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(250))
    from_value: Mapped[str | None] = mapped_column(String(250), nullable=True)
    to_value: Mapped[str | None] = mapped_column(String(250), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    """``hash`` of the entry before this one (64 zeros for the first): unique, so two writers can never fork the
    chain."""
    hash: Mapped[str] = mapped_column(String(64))
    """HMAC-SHA256 of this entry's fields and ``prev_hash``, keyed with the audit key."""


class ServingApiKey(Base):
    """A key of the serving API (``clm keys create``). Only a sha256 of it is stored; the secret is shown once."""

    __tablename__ = "serving_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """The key's public part (``clm_<prefix>_<secret>``): shown in lists, and how a request's key is found."""
    key_hash: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(250))
    """Who the key belongs to; recorded with every feedback sent with it."""
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    """``infer`` (completions, models), ``feedback``."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(250))
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(250), nullable=True)


class ServingFeedback(Base):
    """One feedback on one served answer (at most one per response id), and the review of its correction.

    ``status``: ``logged`` (a rating only), ``example`` (a good rating, published to the landing folder),
    ``pending_review`` (a correction waiting for an operator), ``accepted`` or ``rejected`` (reviewed).
    """

    __tablename__ = "serving_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(64), unique=True)
    slot: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(32))
    task: Mapped[str | None] = mapped_column(String(100), nullable=True)
    rating: Mapped[float] = mapped_column(Float)
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str] = mapped_column(String(250))
    """The owner of the API key it came with (``anonymous`` on a loopback slot without keys)."""
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("serving_api_keys.id"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Content id of the correction as a record (task, prompt, correction), as curated would give it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(250), nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DriftReport(Base):
    """One detector's verdict in one drift check (the volume trigger is a detector named ``volume``).

    The rows of a check share ``check_id``; ``triggered`` marks the ones that requested the retraining, and
    ``training_run_id`` is set on them once the training run they started exists.
    """

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(String(64), index=True)
    detector: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))  # ok | insufficient data | degraded: using fallback | error
    drift: Mapped[bool | None] = mapped_column(nullable=True)
    """None: the detector could not judge (see status and explanation), never a silent "no drift"."""
    statistic: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_reference: Mapped[int] = mapped_column(Integer, default=0)
    n_current: Mapped[int] = mapped_column(Integer, default=0)
    explanation: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    retrain_requested: Mapped[bool] = mapped_column(default=False)
    """The whole check's decision (the same on every row of the check)."""
    triggered: Mapped[bool] = mapped_column(default=False)
    """This row is one of the reasons for the retraining request."""
    suppressed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why a firing requested nothing (cooldown, alert only)."""
    reference_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    current_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    champion_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    training_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"), nullable=True, index=True)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Deployment(Base):
    """One promotion (gate → deploy → traffic steps → aliases) or one rollback, from start to outcome.

    Its ``events`` say what happened at each step; ``status`` is where it stands now. A promotion is active
    (``pending``, ``deploying``, ``deployed``, ``canary``, ``baked``) until it ends as ``promoted``,
    ``gate_failed``, ``rejected`` (refused, or not answered in time, by the approver), ``failed``, ``rolled_back``
    (a safety rule breached), ``aborted`` (a manual rollback), ``abandoned`` (its owner died; ended by the
    reconciler) or ``superseded`` (gated, never deployed, replaced by a newer promotion); a rollback ends as
    ``completed``.
    """

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # promotion | rollback
    model_name: Mapped[str] = mapped_column(String(250))
    version: Mapped[str] = mapped_column(String(32), index=True)
    """The version this deployment brings to traffic (the candidate, or the rollback target)."""
    from_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The champion when it started."""
    strategy: Mapped[str] = mapped_column(String(16))  # canary | blue_green | alias | rollback
    status: Mapped[str] = mapped_column(String(16), index=True)
    slot: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The serving slot that receives ``version``."""
    stable_slot: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The slot serving ``from_version`` while this deployment runs (None: nothing served yet)."""
    actor: Mapped[str] = mapped_column(String(250))
    reason: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    """Why it ended as it did, in one sentence (the breached rule of a rollback, the error of a failure)."""
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    config_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The configuration revision it was started under (migration 0008): its bake window, steps and rules."""


class DeploymentEvent(Base):
    """One step of a deployment: gate, deploy, smoke test, traffic weights, bake verdict, alias move, rollback."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # ok | failed | breach | info
    message: Mapped[str] = mapped_column(Text, default="")
    weights: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    """Traffic split after this step, when it changed or was checked."""
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Live metrics, golden-set scores and rule verdicts behind a bake verdict."""


class DeployLock(Base):
    """Serializes promotions and rollbacks: a row per lock name, held while ``holder`` is set and unexpired.

    Taken with one conditional UPDATE (``holder IS NULL OR expires_at <= now``, the database's clock), which is
    atomic on SQLite (one writer at a time) and on PostgreSQL (the losing UPDATE re-checks the row after the winner
    commits). Every acquisition increments ``token``: the fencing token its holder checks before each serving change.
    """

    __tablename__ = "deploy_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(250), nullable=True)
    acquired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    token: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Incremented by every acquisition; a holder whose token is no longer the row's lost the lock (migration 0006)."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """The database's time of the holder's last renewal."""


class Alert(Base):
    """Something went wrong that a person should hear about: one row per cause while it is open (migration 0009).

    ``open_cause`` equals ``cause`` while the alert is open and is NULL once resolved; its unique index is what keeps
    one open alert per cause (a partial index would say it too, but NULLs are distinct on SQLite and PostgreSQL alike,
    so a plain unique column works on both and in Alembic's comparison). Acknowledged alerts stay open: a recurrence
    bumps ``count`` and ``last_seen`` instead of paging again."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    cause: Mapped[str] = mapped_column(String(250), index=True)
    open_cause: Mapped[str | None] = mapped_column(String(250), unique=True, nullable=True)
    severity: Mapped[str] = mapped_column(String(16))  # info | warning | critical
    message: Mapped[str] = mapped_column(Text)
    links: Mapped[list[Any]] = mapped_column(default=list)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1)
    acknowledged_by: Mapped[str | None] = mapped_column(String(250), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(250), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AlertDelivery(Base):
    """One try at telling a channel (email, webhook, apprise) about an alert, whatever came of it."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # sent | failed | gave_up
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ServingMetric(Base):
    """Live serving numbers of one model version on one slot over one minute, written by the router
    (``clm_lib/serving/metrics_store.py``) so that traffic, errors, latency and feedback stay readable per version
    long after Prometheus has dropped them (migration 0007)."""

    __tablename__ = "serving_metrics"

    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    """Start of the minute (UTC) the numbers cover."""
    model_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The version the slot served (``unknown`` before its first health check answered)."""
    slot: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    """Completion requests the slot answered or failed to answer (4xx, the client's doing, excluded)."""
    errors: Mapped[int] = mapped_column(Integer, default=0)
    """Of ``requests``: 5xx answers, timeouts and unreachable slots."""
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_samples: Mapped[int] = mapped_column(Integer, default=0)
    """Latencies the percentiles were computed from (a bounded sample of ``requests``)."""
    feedback_count: Mapped[int] = mapped_column(Integer, default=0)
    feedback_sum: Mapped[float] = mapped_column(Float, default=0.0)
    """Sum of the ratings (0 bad .. 1 good): the mean is ``feedback_sum / feedback_count``; sums add up across
    writers where means would not."""
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConfigRevision(Base):
    """One version of the run-time-mutable configuration (``clm_lib/config_store.py``, migration 0008).

    Revision 1 is the config file as first read; each later one is an edit or a revert, with who, when and why.
    ``content`` holds only mutable fields (``{dotted path: value}``), never a secret; the rest stays in the file."""

    __tablename__ = "config_revisions"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    base_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The revision the editor started from (None for revision 1)."""
    kind: Mapped[str] = mapped_column(String(16))  # file | change | revert
    reverted_to: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(250))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IngestIdempotency(Base):
    """One pushed POST's ``Idempotency-Key`` (``clm_lib/data/push.py``, migration 0010): the body it came with and,
    once done, the answer a retry gets back instead of a second ingestion. The key is the primary key, so two
    POSTs racing with it cannot both claim it."""

    __tablename__ = "ingest_idempotency"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(250))
    batch_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # running | done
    response: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
