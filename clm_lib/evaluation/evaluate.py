"""Evaluate a candidate on every task it has seen, old and new, and extend its accuracy matrix.

The matrix of a candidate is its lineage's: the rows of its ancestors (each champion it was
trained from, back to the first) as they were scored at their time, then its own row. That is
what makes backward transfer mean "what this model forgot since it learnt each task".
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.errors import TrainingError
from clm_lib.evaluation.matrix import build_matrix
from clm_lib.evaluation.stored_metrics import on_metric, record

log = logging.getLogger(__name__)


def lineage(session: Session, run: TrainingRun) -> list[tuple[TrainingRun, Evaluation]]:
    """Ancestors of ``run`` (oldest first) with their evaluations, following parent versions."""
    chain: list[tuple[TrainingRun, Evaluation]] = []
    parent = run.parent_model_version
    seen: set[str] = set()
    while parent and parent not in seen:
        seen.add(parent)
        ancestor = session.scalars(select(TrainingRun).where(TrainingRun.model_version == parent)).first()
        if ancestor is None:
            break
        ev = latest_evaluation(session, ancestor.id)
        if ev is not None:
            chain.append((ancestor, ev))
        parent = ancestor.parent_model_version
    return list(reversed(chain))


def latest_evaluation(session: Session, training_run_id: str) -> Evaluation | None:
    return session.scalars(
        select(Evaluation).where(Evaluation.training_run_id == training_run_id).order_by(Evaluation.id.desc())
    ).first()


def evaluate_run(cfg: ClmConfig, training_run_id: str) -> Evaluation:
    """Score the run's adapter on the held-out set of every task in ``run.tasks`` and store R's new row."""
    from clm_lib.data.ingest import held_out
    from clm_lib.evaluation.metrics import score_tasks
    from clm_lib.modeling.load import load_model

    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, training_run_id)
        if run is None:
            raise TrainingError(f"unknown training run {training_run_id}")
        if run.status != "succeeded":
            raise TrainingError(f"training run {training_run_id} is {run.status}, not succeeded")
        tasks, base, adapter = list(run.tasks), run.base_model, Path(run.output_dir) / "adapter"
        primary = {t: cfg.evaluation.metric(t) for t in tasks}
        # The lineage's rows on today's metrics where they stored them, so a column holds one metric top to bottom.
        ancestors = [(list(r.tasks), on_metric(e.scores, e.metrics, primary)) for r, e in lineage(s, run)]

    model, tokenizer = load_model(base, adapter)
    data = held_out(cfg, tasks)
    scores = score_tasks(
        model,
        tokenizer,
        data,
        max_examples_per_task=cfg.evaluation.max_examples_per_task,
        batch_size=cfg.evaluation.batch_size,
        max_length=cfg.model.max_length,
        all_metrics=True,
    )
    missing = [t for t in tasks if t not in scores]
    if missing:
        log.warning("no held-out examples for %s; they are left out of this row", missing)
    metrics = record({t: scores[t].metrics for t in tasks if t in scores}, primary)
    row = {t: metrics[t]["values"][primary[t]] for t in metrics}
    matrix = build_matrix([*ancestors, (tasks, row)])
    with session_scope(cfg.database_url) as s:
        evaluation = Evaluation(
            training_run_id=training_run_id,
            tasks=matrix.tasks,
            scores=row,
            metrics=metrics,
            matrix=matrix.rows,
            average_accuracy=round(matrix.average_accuracy, 2),
            backward_transfer=None if matrix.backward_transfer is None else round(matrix.backward_transfer, 2),
        )
        s.add(evaluation)
    log.info(
        "evaluated %s: AA %.1f BWT %s row %s",
        training_run_id,
        evaluation.average_accuracy,
        evaluation.backward_transfer,
        row,
    )
    return evaluation
