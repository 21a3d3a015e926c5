"""Held-out wordings: a second test set per task whose symptoms are said in words training never uses.

The benchmark reports each final model's accuracy on it next to its accuracy on held-out names; these tests hold
the wording split apart from every training ticket and from the demo base's warm-up text, and check that the
runner, the summary and the report carry both numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import continual_metrics as metrics
import continual_report as report
import continual_runner
import pytest
from continual_runner import ArmRun, Runner, make_stream

from clm_lib.demo.stream import generate_task
from clm_lib.modeling.build import CORPUS_SEED, CORPUS_SIZE
from clm_lib.modeling.corpus import HELDOUT_WORDINGS, PRODUCT_LINES, TASKS, support_corpus
from clm_lib.training.context import TrainResult


def _fragments(template: str) -> list[str]:
    """The words of a wording around its product, lower-cased (tickets capitalise their first letter)."""
    return [f.strip().lower() for f in template.split("{subject}") if len(f.strip()) >= 8]


def test_every_symptom_has_held_out_wordings_that_training_templates_never_use():
    assert set(HELDOUT_WORDINGS) == set(TASKS)
    for task, line in PRODUCT_LINES.items():
        assert set(HELDOUT_WORDINGS[task]) == {i.name for i in line.intents}, task
        trained = {s for other in PRODUCT_LINES.values() for i in other.intents for s in i.symptoms}
        for intent, wordings in HELDOUT_WORDINGS[task].items():
            assert wordings and not set(wordings) & trained, (task, intent)
            assert all(_fragments(w) for w in wordings), (task, intent)


@pytest.fixture(scope="module")
def seen_text() -> dict[str, str]:
    """Every training ticket the benchmark draws (its scales' sizes, seeds 0-2) and the base model's warm-up text."""
    train = [r["prompt"] for t in TASKS for seed in (0, 1, 2) for r in generate_task(t, 680, seed)]
    return {
        "training": "\n".join(train).lower(),
        "warm-up corpus": "\n".join(support_corpus(CORPUS_SIZE, CORPUS_SEED)).lower(),
    }


def test_held_out_wordings_occur_in_no_training_ticket_and_not_in_the_warm_up_corpus(seen_text):
    for task, by_intent in HELDOUT_WORDINGS.items():
        for wordings in by_intent.values():
            for fragment in (f for w in wordings for f in _fragments(w)):
                for where, text in seen_text.items():
                    assert fragment not in text, f"{task}: {fragment!r} occurs in the {where}"


def test_the_wording_test_set_says_known_symptoms_in_new_words_only():
    stream = make_stream(["routers", "payments_api"], n_train=200, n_eval=40, seed=0)
    for task in stream.tasks:
        train, names, wording = stream.train[task], stream.eval[task], stream.eval_wording[task]
        assert wording.num_rows == 40
        prompts = wording.column("prompt").to_pylist()
        assert not set(prompts) & set(train.column("prompt").to_pylist())
        assert not set(prompts) & set(names.column("prompt").to_pylist())
        # The same intents' answers: a known symptom, not a new one.
        assert set(wording.column("response").to_pylist()) <= set(train.column("response").to_pylist())
        fragments = [f for ws in HELDOUT_WORDINGS[task].values() for w in ws for f in _fragments(w)]
        assert all(any(f in p.lower() for f in fragments) for p in prompts)
        # Held-out names too: the two test sets differ in wording only.
        assert not any(m in p for p in prompts for m in PRODUCT_LINES[task].models)


def test_the_runner_scores_every_final_model_on_held_out_wordings(monkeypatch, cfg, tmp_path):
    stream = make_stream(["routers", "billing"], n_train=20, n_eval=10, seed=0)

    def fake_train(cfg, new_data, replay_data, parent_adapter_dir, output_dir, run_id):
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        return TrainResult(output_dir, 1, 0.5, new_data.num_rows, 0, 0.0, [], 0.1, 100)

    scored: list[tuple[str, set[str]]] = []

    def fake_accuracy(self, cfg, adapter_dir, tables):
        prompts = {p for t in tables for p in t.column("prompt").to_pylist()}
        wording = {p for t in self.stream.eval_wording.values() for p in t.column("prompt").to_pylist()}
        kind = "wording" if prompts <= wording else "names"
        scored.append((kind, {t for tb in tables for t in tb.column("task").to_pylist()}))
        return {t: (40.0 if kind == "wording" else 90.0) for tb in tables for t in tb.column("task").to_pylist()}

    monkeypatch.setattr(continual_runner, "train_update", fake_train)
    monkeypatch.setattr(Runner, "_accuracy", fake_accuracy)
    runner = Runner(cfg, stream, tmp_path, {})
    seq = runner.continual(runner.arm_config({}), "sequential")
    joint = runner.joint()
    single = runner.single_task()
    assert seq.wording == joint.wording == single.wording == {"routers": 40.0, "billing": 40.0}
    assert [r for r in seq.rows] == [{"routers": 90.0}, {"routers": 90.0, "billing": 90.0}]
    # Wordings are scored once per final model (single-task: once per task's adapter), not after every update.
    assert sum(kind == "wording" for kind, _ in scored) == 1 + 1 + 2

    summary = metrics.wording_summary(seq.rows[-1], [seq.wording])
    assert summary["names_mean"] == 90.0 and summary["wording_mean"] == 40.0 and summary["gap"] == 50.0
    result = {
        "arms": {"recommended": {"heldout_wording": summary}},
        "single_task": {"heldout_wording": metrics.wording_summary({"routers": 80, "billing": 70}, [single.wording])},
    }
    lines = "\n".join(report._wording_lines(result))
    assert "Held-out names vs held-out wordings" in lines
    assert "| recommended | 90.0 | 40.0 | 90.0 / 40.0 | 90.0 / 40.0 |" in lines
    assert re.search(r"\| single_task .* \| 75\.0 \| 40\.0 \|", lines)


def test_a_users_stream_has_no_wording_set_and_reports_none(cfg, tmp_path):
    stream = continual_runner.Stream(tasks=["a"], train={}, eval={})
    assert Runner(cfg, stream, tmp_path, {})._score_wording(cfg, tmp_path, ["a"]) == {}
    assert report._wording_lines({"arms": {"x": {}}, "single_task": {}}) == []
    assert ArmRun().wording == {}


def test_wording_summary_averages_seeds():
    out = metrics.wording_summary({"a": 100.0, "b": 80.0}, [{"a": 40.0, "b": 20.0}, {"a": 60.0, "b": 40.0}])
    assert out["wording"] == {"a": 50.0, "b": 30.0}
    assert list(metrics.wording_summary({"b": 1.0, "a": 2.0}, [{"a": 0.0, "b": 0.0}])["wording"]) == ["b", "a"]
    assert (out["names_mean"], out["wording_mean"], out["gap"]) == (90.0, 40.0, 50.0)
