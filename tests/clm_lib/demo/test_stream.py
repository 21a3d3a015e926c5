from __future__ import annotations

import json
import re

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from clm_lib.config import load_config
from clm_lib.demo.stream import (
    PRODUCT_LINES,
    TASKS,
    generate_task,
    intents,
    write_demo_drops,
    write_records,
)
from clm_lib.modeling.corpus import support_corpus


def _words(records):
    return {w for r in records for w in re.findall(r"[A-Za-z][A-Za-z0-9-]+", r["prompt"])}


def test_tasks_match_the_shipped_config():
    assert list(TASKS) == load_config().data.tasks


@pytest.mark.parametrize("task", TASKS)
def test_generate_task_is_deterministic_distinct_and_labelled(task):
    records = generate_task(task, 300, seed=3)
    assert records == generate_task(task, 300, seed=3)
    assert records != generate_task(task, 300, seed=4)
    assert len({r["prompt"] for r in records}) == 300
    answers = set(intents(task).values())
    assert 4 <= len(answers) <= 8
    assert {r["task"] for r in records} == {task}
    assert {r["response"] for r in records} == answers  # every intent shows up in 300 tickets
    assert all(re.fullmatch(r"team: [a-z -]+ \| action: [a-z -]+", r["response"]) for r in records)


def test_the_same_symptom_gets_a_different_answer_per_product():
    # The interference that makes sequential fine-tuning forget.
    answers = {task: intents(task).get("no_power") for task in ("routers", "thermostats", "ev_chargers")}
    assert len(set(answers.values())) == 3
    for task in ("routers", "ev_chargers"):
        dead = [r for r in generate_task(task, 400, 0) if "won't turn on" in r["prompt"]]
        assert dead and {r["response"] for r in dead} == {intents(task)["no_power"]}
    twice = {intents("billing")["charged_twice"], intents("payments_api")["charged_twice"]}
    assert len(twice) == 2


def test_later_tasks_bring_vocabulary_earlier_ones_never_used():
    earlier = _words(generate_task("routers", 400, 0)) | _words(generate_task("billing", 400, 0))
    later = _words(generate_task("payments_api", 400, 0))
    assert {"webhooks", "Checkout", "SDK", "merchant"} <= later - earlier


def test_each_ticket_names_its_product_line():
    for task, line in PRODUCT_LINES.items():
        for rec in generate_task(task, 100, 1):
            assert any(model in rec["prompt"] for model in line.models), rec


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown demo task 'smart_locks'"):
        generate_task("smart_locks", 3, 0)


def test_support_corpus_holds_no_triage_answers():
    corpus = support_corpus(400, 0)
    assert len(corpus) == 400
    assert not any(re.search(r"team: .* \| action:", text) for text in corpus)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_write_records_round_trips(tmp_path, fmt):
    records = generate_task("billing", 20, 0)
    path = write_records(tmp_path / f"b.{fmt}", records, fmt)
    if fmt == "jsonl":
        back = [json.loads(line) for line in path.read_text().splitlines()]
    elif fmt == "csv":
        back = pacsv.read_csv(path).to_pylist()
    else:
        back = pq.read_table(path).to_pylist()
    assert back == records


def test_write_records_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        write_records(tmp_path / "x.xml", [], "xml")


def test_demo_drops_rotate_formats_and_plant_problems(tmp_path):
    paths = write_demo_drops(tmp_path / "a", n_per_task=200, seed=1)
    assert [p.name for p in paths] == [
        "01_routers.jsonl",
        "02_billing.csv",
        "03_thermostats.parquet",
        "04_ev_chargers.jsonl",
        "05_payments_api.csv",
    ]
    again = write_demo_drops(tmp_path / "b", n_per_task=200, seed=1)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]

    lines = paths[0].read_text().splitlines()
    parsed, malformed = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            malformed += 1
    assert malformed >= 1
    assert any(r["response"] == "" for r in parsed)
    assert any(r["task"] not in TASKS for r in parsed)
    assert any(len(r["prompt"]) > 2000 for r in parsed)
    keys = [(r["task"], r["prompt"], r["response"]) for r in parsed]
    assert len(keys) - len(set(keys)) >= 1

    billing = pacsv.read_csv(paths[1]).to_pylist()
    clean = generate_task("billing", 200, 1)
    assert 200 < len(billing) <= 200 * 1.06
    assert [r for r in billing if r in clean and r["task"] == "billing"]  # the real tickets are there
    assert any(r["task"] == "routers" for r in billing)  # a re-sent record of an earlier drop


@pytest.mark.parametrize("task", TASKS)
def test_heldout_tickets_use_surface_forms_training_never_shows(task):
    line = PRODUCT_LINES[task]
    held = generate_task(task, 200, 0, heldout=True)
    assert held == generate_task(task, 200, 0, heldout=True)
    assert {r["response"] for r in held} == set(intents(task).values())  # every intent is tested
    assert not {r["prompt"] for r in held} & {r["prompt"] for r in generate_task(task, 800, 0)}
    for rec in held:
        assert any(model in rec["prompt"] for model in line.heldout_models), rec
        assert not any(model in rec["prompt"] for model in line.models), rec
