"""Windows read from a real Delta lake and clm's database; the champion context when there is no champion."""

from datetime import UTC, datetime

import pyarrow as pa

from clm_lib.data import lake
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import TrainingRun
from clm_lib.demo.stream import generate_task
from clm_lib.drift.sources import champion_context, load_windows


def _curated(task: str, n: int, seed: int) -> pa.Table:
    recs = generate_task(task, n, seed)
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {**r, "id": f"{task}-{seed}-{i}", "split": "eval" if i % 5 == 0 else "train", "source": "test",
             "batch_id": f"b{seed}", "line": i, "ingested_at": now, "metadata": "{}"}
            for i, r in enumerate(recs)
        ]
    )


def test_reference_is_what_the_last_training_read_and_current_is_what_came_since(cfg):
    upgrade(cfg.database_url)
    before = load_windows(cfg, max_rows=1000)
    assert before.reference.num_rows == 0 and before.current.num_rows == 0 and before.new_rows == 0
    v1 = lake.append(cfg, "curated", _curated("routers", 50, 1))
    untrained = load_windows(cfg, max_rows=1000)
    assert untrained.reference_version is None and untrained.reference.num_rows == 0
    assert untrained.current.num_rows == 50 and untrained.new_rows == 40  # train split only
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id="r1", status="succeeded", base_model="b", config_hash="h", curated_version=v1,
                          finished_at=datetime.now(UTC)))
    v2 = lake.append(cfg, "curated", _curated("billing", 30, 2))
    w = load_windows(cfg, max_rows=1000)
    assert (w.reference_version, w.current_version) == (v1, v2)
    assert set(w.reference["task"].to_pylist()) == {"routers"} and w.reference.num_rows == 50
    assert set(w.current["task"].to_pylist()) == {"billing"} and w.current.num_rows == 30
    assert w.new_rows == 24
    assert load_windows(cfg, max_rows=10).current.num_rows == 10


def test_no_champion_gives_an_empty_context(cfg, mlflow_uri):
    cfg.registry.tracking_uri = mlflow_uri
    upgrade(cfg.database_url)
    ctx = champion_context(cfg)
    assert ctx.nll_fn is None and ctx.score_fn is None and ctx.champion_version is None


def test_exact_match_scores_one_value_per_row(tiny_cfg, tiny_base):
    import numpy as np

    from clm_lib.drift.sources import exact_match_fn
    from clm_lib.drift.window import TextWindow
    from clm_lib.modeling.load import load_model

    model, tokenizer = load_model(tiny_base)
    window = TextWindow.from_records(generate_task("routers", 12, 3))
    scores = exact_match_fn(model, tokenizer, tiny_cfg)(window)
    assert scores.shape == (12,) and set(np.unique(scores)) <= {0.0, 1.0}
