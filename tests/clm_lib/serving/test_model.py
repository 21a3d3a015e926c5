from __future__ import annotations

import pytest

from clm_lib.modeling.generate import complete
from clm_lib.serving.model import ServedModel

PROMPT = "My router keeps dropping the wifi connection every evening"


@pytest.fixture(scope="module")
def served(tiny_base):
    from clm_lib.modeling.load import load_model

    model, tok = load_model(tiny_base)
    return ServedModel(model, tok, name="clm-assistant", version="3")


def test_a_slot_answers_what_generation_answers(served):
    for params in ({}, {"stop": ["e"]}, {"temperature": 0.9, "top_p": 0.8, "seed": 4}):
        got = served.complete(PROMPT, max_tokens=10, **params)
        (expected,) = complete(served.model, served.tokenizer, [PROMPT], max_new_tokens=10, **params)
        assert got == expected
    assert served.complete(PROMPT, max_tokens=10, stop=["e"]).finish_reason == "stop"


def test_max_tokens_must_leave_room_for_the_prompt(served):
    with pytest.raises(ValueError, match=f"context length of {served.context_length} tokens"):
        served.complete(PROMPT, max_tokens=served.context_length)
