from __future__ import annotations

from clm_lib.training.formatting import PROMPT_TEMPLATE, format_prompt, format_response, parse_response


def test_prompt_carries_the_request_and_ends_where_the_answer_starts():
    text = format_prompt("  My VoltDock 7 is dead.  ")
    assert text == PROMPT_TEMPLATE.format(prompt="My VoltDock 7 is dead.")
    assert text.endswith("Triage:")
    assert "ev_chargers" not in text  # no task id: the request names the product


def test_response_round_trip():
    answer = "team: ev field | action: dispatch technician"
    assert format_response(answer) == " " + answer
    assert parse_response(format_response(answer)) == answer
