"""Task metrics: how one task's answers are scored against its references, by name.

Every metric has one shape: ``(predictions, references) -> score`` on a 0-100 scale, over one task's held-out
examples in the same order. A prediction is the answer parsed from the greedy generation (what serving answers at
temperature 0). Evaluation computes every metric for every task and stores them all; the task's primary metric
(``evaluation.metrics`` in the config, :data:`DEFAULT_METRIC` for a task not listed) is the score the accuracy
matrix and the promotion gate use.

Light to import (the config checks names against :data:`METRICS`): scikit-learn and rouge-score are imported by the
metric that needs them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache

Metric = Callable[[Sequence[str], Sequence[str]], float]

DEFAULT_METRIC = "exact_match"
"""The metric of a task the config does not name: what every task was scored by before metrics were chosen."""


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _mean(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of answers equal to their reference, whitespace around aside (``clm_lib.modeling.prompt.same_answer``)."""
    _check(predictions, references)
    return _mean([p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)])


def _label(text: str) -> str:
    # A class label compares the way a person reads it: "Billing " and "billing" are one label.
    return " ".join(text.split()).casefold()


def label_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Classification accuracy: share of answers whose label equals the reference label (case and spacing aside)."""
    _check(predictions, references)
    return _mean([_label(p) == _label(r) for p, r in zip(predictions, references, strict=True)])


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels the references use (scikit-learn's ``average="macro"``).

    A rare label counts as much as a common one, so a model that always answers the majority label scores low even
    where its accuracy is high. An answer that is no reference label is a miss of its example's label."""
    from sklearn.metrics import f1_score

    _check(predictions, references)
    if not references:
        return 0.0
    truth, guesses = [_label(r) for r in references], [_label(p) for p in predictions]
    return 100.0 * float(f1_score(truth, guesses, labels=sorted(set(truth)), average="macro", zero_division=0))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _squad_tokens(text: str) -> list[str]:
    # SQuAD v1.1's normalisation: lower case, no punctuation, no English articles, single spaces.
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = _squad_tokens(prediction), _squad_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """SQuAD-style F1 of the bag of words of each answer against its reference, mean over examples."""
    _check(predictions, references)
    return _mean([_token_f1(p, r) for p, r in zip(predictions, references, strict=True)])


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), mean over examples.

    rouge-score's tokenizer keeps only ASCII letters and digits, so it suits English answers only."""
    _check(predictions, references)
    scorer = _rouge_scorer()
    return _mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)])


METRICS: dict[str, Metric] = {
    "exact_match": exact_match,
    "label_accuracy": label_accuracy,
    "macro_f1": macro_f1,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
}
"""Every metric by the name the config uses."""


def score_all(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every metric of :data:`METRICS` on one task's answers, by name."""
    return {name: metric(predictions, references) for name, metric in METRICS.items()}
