"""clm_lib/modeling/corpus.py: the support-desk text the demo base model is built from."""

from __future__ import annotations

import re

import pytest

from clm_lib.modeling.corpus import PRODUCT_LINES, TASKS, product_line, seeded_rng, support_corpus, ticket


def test_the_same_seed_gives_the_same_corpus_and_another_seed_another():
    assert support_corpus(200, 5) == support_corpus(200, 5)
    assert support_corpus(200, 5) != support_corpus(200, 6)
    assert support_corpus(50, 5) == support_corpus(200, 5)[:50]  # a longer corpus extends a shorter one


def test_the_corpus_never_shows_a_triage_answer_nor_what_only_held_out_tickets_use():
    text = "\n".join(support_corpus(2000, 0))
    assert not re.search(r"team: .* \| action:", text)
    heldout = {m for line in PRODUCT_LINES.values() for m in line.heldout_models}
    assert heldout and not [m for m in heldout if m in text]


def test_every_product_line_and_desk_notes_are_in_the_corpus():
    corpus = support_corpus(400, 0)
    notes = corpus[3::4]
    assert all(n.startswith(("Desk note", "Internal", "Reminder", "Escalated")) for n in notes)
    for task in TASKS:
        assert any(m in text for text in corpus for m in PRODUCT_LINES[task].models), task


def test_held_out_tickets_name_held_out_products():
    line = product_line("routers")
    text = ticket(line, line.intents[0], seeded_rng(0, "t"), heldout=True)
    assert any(m in text for m in line.heldout_models) and not any(m in text for m in line.models)


def test_an_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown demo task 'smart_locks'; known: routers, billing"):
        product_line("smart_locks")
