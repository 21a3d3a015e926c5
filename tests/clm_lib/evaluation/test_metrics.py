from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from clm_lib.config import load_config
from clm_lib.demo.stream import generate_task
from clm_lib.evaluation.metrics import eval_subset, score_examples, score_tasks
from clm_lib.modeling.generate import complete

TINY = Path(__file__).resolve().parents[3] / "include" / "tiny.yaml"


def _records(task: str, n: int, seed: int = 0) -> pa.Table:
    rows = generate_task(task, n, seed)
    ids = [hashlib.sha256(r["prompt"].encode()).hexdigest()[:16] for r in rows]
    return pa.Table.from_pylist([{"id": i, **r} for i, r in zip(ids, rows, strict=True)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    """The tiny base with an adapter trained briefly on routers only: right on some tickets, wrong on others."""
    from clm_lib.modeling.load import load_model
    from clm_lib.training.recipe import train_update

    root = tmp_path_factory.getbasetemp()
    cfg = load_config(TINY, environ={"CLM_HOME": str(root / "metrics"), "CLM__MODEL__BASE_PATH": str(tiny_base)})
    cfg.training.max_steps = 40
    base = tiny_base
    result = train_update(
        cfg,
        new_data=_records("routers", 200, seed=1),
        replay_data=None,
        parent_adapter_dir=None,
        output_dir=root / "metrics" / "run",
        run_id="m",
    )
    return load_model(base, result.adapter_dir)


def _greedy(model, tok, prompt: str, max_new_tokens: int = 40) -> str | None:
    """The greedy answer, generated alone, or None when it did not end with EOS."""
    (done,) = complete(model, tok, [prompt], max_new_tokens=max_new_tokens)
    return done.text if done.finish_reason == "stop" else None


def test_teacher_forced_exact_match_equals_greedy_generation(trained):
    model, tok = trained
    routers, thermostats = _records("routers", 8, seed=9), _records("thermostats", 4, seed=9)
    rows = routers.to_pylist() + thermostats.to_pylist()
    # The model's own greedy answers as references give guaranteed matches; real references give both kinds.
    own = [{**r, "id": r["id"] + "-own", "response": _greedy(model, tok, r["prompt"])} for r in rows[:6]]
    table = pa.Table.from_pylist(rows + [r for r in own if r["response"]])
    verdicts = {s.row_id: s.exact for s in score_examples(model, tok, table, batch_size=5)}
    expected = {r["id"]: _greedy(model, tok, r["prompt"]) == r["response"] for r in table.to_pylist()}
    assert verdicts == expected
    assert any(expected.values()) and not all(expected.values())


def test_score_tasks_reports_per_task_scores(trained):
    model, tok = trained
    data = pa.concat_tables([_records("routers", 30, seed=5), _records("thermostats", 10, seed=5)])
    scores = score_tasks(model, tok, data, max_examples_per_task=20, batch_size=16, max_length=96)
    assert set(scores) == {"routers", "thermostats"}
    assert scores["routers"].n == 20 and scores["thermostats"].n == 10
    # Learned task beats the unseen one on every measure.
    assert scores["routers"].token_accuracy > scores["thermostats"].token_accuracy
    assert scores["routers"].loss < scores["thermostats"].loss
    assert scores["thermostats"].accuracy == 0.0
    for s in scores.values():
        assert 0 <= s.accuracy <= s.token_accuracy <= 100


def test_eval_subset_is_stable_as_data_grows():
    first = _records("routers", 30, seed=1)
    more = pa.concat_tables([_records("routers", 30, seed=2), first])
    a, b = eval_subset(first, 10), eval_subset(more, 10)
    assert a.num_rows == 10
    assert a["id"].to_pylist() == sorted(a["id"].to_pylist())
    # The subset only changes where the new rows sort first: the rows kept from before stay in.
    kept = set(a["id"].to_pylist()) & set(b["id"].to_pylist())
    assert kept == {i for i in a["id"].to_pylist() if i <= max(b["id"].to_pylist())}


def test_all_metrics_scores_the_greedy_answers_of_every_task(trained):
    from clm_lib.evaluation.metrics import greedy_answers
    from clm_lib.evaluation.task_metrics import METRICS

    model, tok = trained
    data = pa.concat_tables([_records("routers", 12, seed=5), _records("thermostats", 6, seed=5)])
    plain = score_tasks(model, tok, data, max_examples_per_task=12, batch_size=8, max_length=96)
    scores = score_tasks(model, tok, data, max_examples_per_task=12, batch_size=8, max_length=96, all_metrics=True)
    assert all(s.metrics == {} for s in plain.values())  # callers that read accuracy alone generate nothing
    for task, s in scores.items():
        assert set(s.metrics) == set(METRICS) and s.accuracy == plain[task].accuracy
        # Right answers are exactly the teacher-forced ones; partial credit never scores below them.
        assert s.metrics["exact_match"] == pytest.approx(s.accuracy)
        assert s.metrics["token_f1"] >= s.metrics["exact_match"] and s.metrics["rouge_l"] >= s.metrics["exact_match"]
    # A wrong example's answer is what greedy generation writes, the same as generating it alone.
    scored = score_examples(model, tok, data, batch_size=8, max_length=96)
    answers = greedy_answers(model, tok, data, scored, batch_size=8, max_length=96)
    rows = {r["id"]: r for r in data.to_pylist()}
    wrong = [s for s in scored if not s.exact]
    assert wrong and len(answers) == len(scored)
    budget = 2 * max(s.tokens for s in wrong)
    for s in wrong[:4]:
        (alone,) = complete(model, tok, [rows[s.row_id]["prompt"]], max_new_tokens=budget, max_length=96)
        assert answers[s.row_id] == alone.text
