"""Perplexity drift with a real (tiny) causal LM: the demo base model of include/tiny.yaml."""

import numpy as np
import pytest

from clm_lib.drift import DriftContext, Status
from clm_lib.drift.config import PerplexitySettings
from clm_lib.drift.perplexity import Perplexity, nll_fn_from_model
from clm_lib.drift.window import TextWindow


@pytest.fixture(scope="module")
def champion(tiny_base):
    from clm_lib.modeling.load import load_model

    model, tokenizer = load_model(tiny_base)
    return DriftContext(nll_fn=nll_fn_from_model(model, tokenizer, batch_size=64), champion_version="7")


def _detector() -> Perplexity:
    return Perplexity(PerplexitySettings(sample_size=100, min_samples=50))


def test_nll_fn_scores_each_text_and_marks_empty_ones(champion):
    nll = champion.nll_fn(["My router is completely dead.", "", "rtuoer ym daed ylelpmoc si"])
    assert np.isfinite(nll[0]) and np.isnan(nll[1])
    assert nll[2] > nll[0]


def test_fires_when_new_prompts_are_harder(champion, reference):
    garbled = TextWindow.from_lists([" ".join(w[::-1] for w in p.split()) for p in reference.prompts],
                                    reference.tasks.tolist())
    res = _detector().check(reference, garbled, champion)
    assert res.status == Status.OK and res.drift is True, res.explanation
    assert res.details["current_perplexity"] > res.details["reference_perplexity"] * 1.05
    assert res.details["champion_version"] == "7"


def test_quiet_on_same_distribution(champion, reference, same):
    res = _detector().check(reference, same, champion)
    assert res.drift is False, res.explanation


def test_easier_prompts_are_not_drift(champion, reference):
    # One-sided on purpose: a champion finding new data *easier* than its reference is no reason to retrain.
    garbled = TextWindow.from_lists([" ".join(w[::-1] for w in p.split()) for p in reference.prompts],
                                    reference.tasks.tolist())
    res = _detector().check(garbled, reference, champion)
    assert res.drift is False and res.details["ratio"] < 1


def test_without_a_champion_it_is_insufficient_data(reference, same):
    res = _detector().check(reference, same, DriftContext())
    assert res.status == Status.INSUFFICIENT and res.drift is None
    assert "no champion" in res.explanation
