import math

from clm_lib.drift import Status
from clm_lib.drift.config import TextStatsSettings
from clm_lib.drift.text_stats import TextStats, words
from clm_lib.drift.window import TextWindow


def test_words_fold_case_and_digits():
    assert words("My Aurora X2 charged 49.99 EUR, isn't it?") == ["my", "aurora", "x0", "charged", "00", "00",
                                                                  "eur", "isn't", "it"]


def test_quiet_on_same_distribution(reference, same):
    res = TextStats().check(reference, same)
    assert res.status == Status.OK
    assert res.drift is False, res.explanation
    assert set(res.details["features"]) == {"prompt_chars", "prompt_words", "mean_word_length", "response_chars",
                                            "oov_rows"}


def test_fires_on_longer_prompts(reference, mix):
    longer = [{**r, "prompt": r["prompt"] + " It is mounted on the wall in the hallway."} for r in mix(
        ("routers", "billing", "thermostats"), 200, 4)]
    res = TextStats().check(reference, TextWindow.from_records(longer))
    assert res.drift is True
    assert {"prompt_chars", "prompt_words"} <= set(res.details["drifted"])
    assert res.details["features"]["prompt_chars"]["psi"] > 0.1
    assert "prompt_chars mean" in res.explanation


def test_fires_on_out_of_vocabulary_words(reference, new_vocabulary):
    res = TextStats().check(reference, new_vocabulary)
    assert res.drift is True
    oov = res.details["features"]["oov_rows"]
    assert oov["current_share"] > oov["reference_share"] + 0.2
    assert "oov_rows" in res.details["drifted"]


def test_nan_lengths_are_insufficient_data(reference):
    broken = TextWindow.from_lists([math.nan] * 300, tasks=["routers"] * 300)
    res = TextStats().check(reference, broken)
    assert res.status == Status.INSUFFICIENT and res.drift is None
    assert "300 without" in res.explanation


def test_some_missing_prompts_are_left_out_and_reported(reference, same):
    holes = TextWindow.from_lists([None if i % 10 == 0 else p for i, p in enumerate(same.prompts)],
                                  same.tasks.tolist(), same.responses.tolist())
    res = TextStats(TextStatsSettings(min_samples=50)).check(reference, holes)
    assert res.status == Status.OK and res.drift is False
    assert res.details["rows_without_prompt"] == 60 and "left out" in res.explanation
