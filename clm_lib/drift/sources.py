"""What a scheduled drift check compares, read from clm's stores: the windows from the lake, the champion from MLflow.

The reference window is the curated data at the Delta version the last successful training run read (what the
champion has seen); the current window is every curated row added since. Before any training, the reference is
empty and the data detectors report "insufficient data" while the volume trigger still counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.drift.base import DriftContext
from clm_lib.drift.window import TextWindow
from clm_lib.evaluation.stored_metrics import exact_match_scores

log = logging.getLogger(__name__)

COLUMNS = ["id", "task", "prompt", "response", "split", "ingested_at"]


@dataclass(frozen=True)
class Windows:
    reference: pa.Table
    current: pa.Table
    reference_version: int | None
    """Curated version the last successful training read (None: never trained)."""
    current_version: int | None
    """Latest curated version (None: nothing curated yet)."""
    new_rows: int
    """New curated *training* rows since the last training: the same count ``plan_update`` compares with."""


def _newest(table: pa.Table, max_rows: int) -> pa.Table:
    if table.num_rows <= max_rows:
        return table
    return table.sort_by([("ingested_at", "descending"), ("id", "ascending")]).slice(0, max_rows)


def load_windows(cfg: ClmConfig, max_rows: int | None = None) -> Windows:
    """Reference and current windows (each at most ``max_rows``, default ``drift.window.max_rows``, newest rows)."""
    from clm_lib.data import lake
    from clm_lib.data.ingest import curated_rows_since

    max_rows = max_rows or cfg.drift.window.max_rows
    with session_scope(cfg.database_url) as s:
        last = s.scalars(
            select(TrainingRun)
            .where(TrainingRun.status == "succeeded", TrainingRun.curated_version.is_not(None))
            .order_by(TrainingRun.finished_at.desc())
        ).first()
        trained = last.curated_version if last else None
    latest = lake.table_version(cfg, "curated")
    if trained is None:
        reference = lake.read_table(cfg, "curated", columns=COLUMNS).slice(0, 0)
    else:
        reference = lake.read_table(cfg, "curated", version=trained, columns=COLUMNS)
    current = curated_rows_since(cfg, trained, until=latest).select(COLUMNS) if latest is not None else reference
    new_rows = int(pc.sum(pc.equal(current["split"], "train")).as_py() or 0) if current.num_rows else 0
    return Windows(_newest(reference, max_rows), _newest(current, max_rows), trained, latest, new_rows)


def champion_context(cfg: ClmConfig) -> DriftContext:
    """A context whose callables score with the current champion; an empty one (detectors then report
    "insufficient data") when there is no champion yet or it cannot be loaded."""
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version

    context = DriftContext(cache_dir=cfg.home / "cache" / "drift")
    version = alias_version(cfg, CHAMPION)
    if version is None:
        return context
    with session_scope(cfg.database_url) as s:
        run = s.scalars(select(TrainingRun).where(TrainingRun.model_version == version)).first()
        evaluation = (
            s.scalars(
                select(Evaluation).where(Evaluation.training_run_id == run.id).order_by(Evaluation.id.desc())
            ).first()
            if run
            else None
        )
        if run is None or not run.output_dir:
            log.warning("champion version %s has no training run with an output folder; model detectors skip", version)
            return context
        base, adapter = run.base_model, Path(run.output_dir) / "adapter"
        # The concept detector tests exact-match proportions, whatever metric a task's score is.
        scores = exact_match_scores(evaluation.scores, evaluation.metrics) if evaluation else {}
    try:
        from clm_lib.modeling.load import load_model

        model, tokenizer = load_model(base, adapter)
    except Exception as exc:  # a missing folder or an incompatible adapter must not stop the data detectors
        log.warning("cannot load champion %s (%s); model-based drift detectors skip", version, exc)
        return context
    from clm_lib.drift.perplexity import nll_fn_from_model

    context.champion_version = version
    context.nll_fn = nll_fn_from_model(model, tokenizer, max_length=cfg.model.max_length)
    context.score_fn = exact_match_fn(model, tokenizer, cfg)
    context.eval_scores = _eval_sizes(cfg, scores)
    return context


def exact_match_fn(model, tokenizer, cfg: ClmConfig):
    """A ``score_fn``: labelled rows -> 1.0 where greedy decoding reproduces the response exactly, else 0.0."""
    from clm_lib.evaluation.metrics import score_examples

    def score(window: TextWindow) -> np.ndarray:
        table = window.to_table()
        examples = score_examples(model, tokenizer, table, batch_size=cfg.evaluation.batch_size,
                                  max_length=cfg.model.max_length)
        by_id = {e.row_id: float(e.exact) for e in examples}
        return np.array([by_id.get(i, np.nan) for i in table["id"].to_pylist()])

    return score


def _eval_sizes(cfg: ClmConfig, scores: dict[str, float]) -> dict[str, tuple[float, int]]:
    """Task -> (evaluation accuracy, examples it was measured on): the evaluation scores the first
    ``max_examples_per_task`` held-out rows of each task, so that is its size unless the task has fewer."""
    from clm_lib.data.ingest import held_out

    if not scores:
        return {}
    tasks = held_out(cfg, list(scores)).column("task").to_pylist()
    cap = cfg.evaluation.max_examples_per_task
    return {t: (float(acc), min(cap, tasks.count(t))) for t, acc in scores.items() if tasks.count(t)}
