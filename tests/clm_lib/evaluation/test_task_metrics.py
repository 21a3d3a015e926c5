"""Each task metric on hand-made answers whose scores are worked out by hand, and the config that chooses them."""

from __future__ import annotations

import pytest

from clm_lib.config import load_config
from clm_lib.errors import ConfigError
from clm_lib.evaluation.task_metrics import (
    METRICS,
    exact_match,
    label_accuracy,
    macro_f1,
    rouge_l,
    score_all,
    token_f1,
)
from clm_lib.modeling.prompt import same_answer


def test_exact_match_is_what_same_answer_counts():
    predictions, references = ["yes", " no \n", "maybe", "Yes"], ["yes", "no", "no", "yes"]
    assert exact_match(predictions, references) == pytest.approx(50.0)
    assert [same_answer(p, r) for p, r in zip(predictions, references, strict=True)] == [True, True, False, False]


def test_label_accuracy_ignores_case_and_spacing_where_exact_match_does_not():
    predictions, references = (
        ["Billing ", "SHIPPING", "billing  dept", "refund"],
        ["billing", "shipping", "Billing Dept", "billing"],
    )
    assert label_accuracy(predictions, references) == pytest.approx(75.0)
    assert exact_match(predictions, references) == 0.0


def test_macro_f1_punishes_always_answering_the_majority_label():
    references = ["ok"] * 8 + ["broken"] * 2
    predictions = ["ok"] * 10
    assert label_accuracy(predictions, references) == pytest.approx(80.0)
    # ok: precision 8/10, recall 1 -> F1 16/18; broken: never predicted -> 0. Mean of the two.
    assert macro_f1(predictions, references) == pytest.approx(100 * (16 / 18) / 2)


def test_macro_f1_counts_an_answer_that_is_no_label_as_a_miss():
    # "dunno" is no reference label: a miss of "b", never a label of its own that could earn F1.
    assert macro_f1(["A ", "dunno"], ["a", "b"]) == pytest.approx(50.0)
    assert macro_f1(["a", "b"], ["a", "b"]) == pytest.approx(100.0)


def test_token_f1_is_squad_word_overlap():
    # Articles and punctuation go: {cat, sat, on, mat} both sides.
    assert token_f1(["the cat sat on the mat."], ["a cat sat on a mat"]) == pytest.approx(100.0)
    # {reset, router} against {reset, router, and, modem}: precision 1, recall 1/2 -> F1 2/3.
    assert token_f1(["Reset the router!"], ["reset router and modem"]) == pytest.approx(100 * 2 / 3)
    assert token_f1(["Reset the router!", "blue"], ["reset router and modem", "red"]) == pytest.approx(100 / 3)


def test_rouge_l_gives_a_paraphrase_partial_credit_for_its_longest_common_subsequence():
    reference = "restart the router and wait two minutes"
    paraphrase = "wait two minutes after you restart the router"
    # LCS 3 words ("restart the router" or "wait two minutes"): precision 3/8, recall 3/7 -> F 0.4.
    assert rouge_l([paraphrase], [reference]) == pytest.approx(40.0)
    assert rouge_l([reference], [reference]) == pytest.approx(100.0)
    assert exact_match([paraphrase], [reference]) == 0.0
    # Word order matters to ROUGE-L, not to bag-of-words F1.
    assert token_f1([paraphrase], [reference]) > rouge_l([paraphrase], [reference])


def test_score_all_has_every_metric_on_a_0_to_100_scale():
    values = score_all(["billing", "Shipping", "no idea"], ["billing", "shipping", "refund"])
    assert set(values) == set(METRICS)
    assert values["exact_match"] == pytest.approx(100 / 3)
    assert values["label_accuracy"] == pytest.approx(200 / 3)
    assert all(0.0 <= v <= 100.0 for v in values.values())


def test_predictions_and_references_must_pair_up():
    for metric in METRICS.values():
        with pytest.raises(ValueError, match="2 predictions but 1 references"):
            metric(["a", "b"], ["a"])


def _config(tmp_path, metrics: str):
    return load_config(environ={"CLM_HOME": str(tmp_path), "CLM__EVALUATION__METRICS": metrics})


def test_config_chooses_a_primary_metric_per_task_and_defaults_to_exact_match(tmp_path):
    cfg = _config(tmp_path, "{billing: macro_f1, routers: rouge_l}")
    assert cfg.evaluation.metric("billing") == "macro_f1"
    assert cfg.evaluation.metric("routers") == "rouge_l"
    assert cfg.evaluation.metric("thermostats") == "exact_match"


def test_an_unknown_metric_names_the_field_and_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as exc:
        _config(tmp_path, "{billing: f1}")
    message = str(exc.value)
    assert "evaluation.metrics" in message and "'f1'" in message
    assert "exact_match, label_accuracy, macro_f1, token_f1, rouge_l" in message


def test_a_metric_for_a_task_not_in_data_tasks_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluation\.metrics names 'biling', not in data\.tasks"):
        _config(tmp_path, "{biling: macro_f1}")
