import math

import numpy as np
import pyarrow as pa
import pytest

from clm_lib.drift.window import TextWindow


def test_unusable_values_become_none_and_are_counted():
    w = TextWindow.from_lists(["ok", None, math.nan, 3], tasks=["a", "a", None, "b"])
    assert w.prompts.tolist() == ["ok", None, None, None]
    assert w.missing_prompts == 3
    assert len(w.usable()) == 1
    assert w.responses is None


def test_from_table_keeps_ids_and_labels():
    table = pa.table({"id": ["x", "y"], "task": ["a", "b"], "prompt": ["p", "q"], "response": ["r", None]})
    w = TextWindow.coerce(table)
    assert w.ids.tolist() == ["x", "y"]
    assert w.responses.tolist() == ["r", None]
    assert w.to_table().column("response").to_pylist() == ["r", None]


def test_empty_and_missing_prompt_column():
    assert len(TextWindow.coerce(None)) == 0
    assert len(TextWindow.coerce([])) == 0
    with pytest.raises(ValueError, match="'prompt' column"):
        TextWindow.from_table(pa.table({"text": ["a"]}))


def test_sample_is_seeded_and_without_replacement():
    w = TextWindow.from_lists([f"t{i}" for i in range(100)])
    a = w.sample(10, np.random.default_rng(0))
    b = w.sample(10, np.random.default_rng(0))
    assert a.prompts.tolist() == b.prompts.tolist()
    assert len(set(a.prompts.tolist())) == 10
    assert w.sample(1000, np.random.default_rng(0)) is w
