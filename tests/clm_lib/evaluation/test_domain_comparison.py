"""Before/after scores of a domain adaptation (clm_lib/evaluation/domain_comparison.py)."""

from __future__ import annotations

import json

import pyarrow as pa

from clm_lib.config import DomainConfig, LoraConfig
from clm_lib.evaluation.domain_comparison import (
    COMPARISON_FILE,
    DomainComparison,
    TaskChange,
    compare_bases,
    load_comparisons,
    save_comparison,
)
from clm_lib.training.domain import adapt_domain
from clm_lib.training.recipe import train_update

from ..training.helpers import records
from ..training.test_domain import write_text


def _new_domain(n: int = 10) -> pa.Table:
    rows = [{"id": f"n{i}", "task": "pydoc", "prompt": f"Which statement starts with 'for'? ({i})",
             "response": "compound"} for i in range(n)]  # fmt: skip
    return pa.Table.from_pylist(rows)


def test_compare_with_and_without_an_adapter(tmp_path, tiny_cfg, tiny_base):
    settings = DomainConfig(max_steps=8, batch_size=8, chunk_tokens=64, lora=LoraConfig(r=4, alpha=8))
    adapted = adapt_domain(tiny_cfg, write_text(tmp_path / "text"), tmp_path / "adapted", settings=settings)
    tiny_cfg.training.max_steps = 6
    task = train_update(tiny_cfg, new_data=records("routers", 24), replay_data=None, parent_adapter_dir=None,
                        output_dir=tmp_path / "task", run_id="t")  # fmt: skip
    original = records("routers", 12, seed=9)
    comparison = compare_bases(
        tiny_base, adapted.out_dir, original=original, new=_new_domain(), adapter_dir=task.adapter_dir,
        max_examples_per_task=10, batch_size=16, max_length=96,
    )  # fmt: skip
    by_task = {t.task: t for t in comparison.tasks}
    assert {t: c.group for t, c in by_task.items()} == {"routers": "original", "pydoc": "new"}
    assert by_task["routers"].n == 10 and by_task["pydoc"].n == 10
    # Only the base changed: the adapter's scores move, they are measured, not copied.
    assert by_task["routers"].loss_before != by_task["routers"].loss_after
    assert comparison.text_loss_before == adapted.heldout_loss_before
    assert comparison.adapter == str(task.adapter_dir)

    bare = compare_bases(tiny_base, adapted.out_dir, original=None, new=_new_domain(), max_examples_per_task=5)
    assert [t.group for t in bare.tasks] == ["new"] and bare.adapter is None and bare.mean_change("original") is None

    path = save_comparison(comparison, adapted.out_dir)
    assert path == adapted.out_dir / COMPARISON_FILE
    assert DomainComparison.from_dict(json.loads(path.read_text())) == comparison
    assert load_comparisons(tmp_path) == [comparison]


def test_mean_change_and_unreadable_files(tmp_path):
    c = DomainComparison(
        "a", "b", None,
        [TaskChange("x", "original", 50, 40, 1, 1, 10), TaskChange("y", "original", 50, 70, 1, 1, 10),
         TaskChange("z", "new", 10, 30.5, 2, 1, 10)],
        created_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    assert c.mean_change("original") == 5.0 and c.mean_change("new") == 20.5
    assert c.to_dict()["tasks"][0]["accuracy_change"] == -10
    (tmp_path / "one").mkdir()
    save_comparison(c, tmp_path / "one")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / COMPARISON_FILE).write_text("{not json")
    assert load_comparisons(tmp_path) == [c]
    assert load_comparisons(tmp_path / "missing") == []
