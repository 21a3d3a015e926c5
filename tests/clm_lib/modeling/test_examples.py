from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from clm_lib.errors import TrainingError
from clm_lib.modeling.corpus import support_corpus
from clm_lib.modeling.examples import IGNORE_INDEX, MIN_PROMPT_TOKENS, check_table, collate, encode_pairs, encode_table
from clm_lib.modeling.prompt import PromptFormat
from clm_lib.modeling.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(support_corpus(500, 0), vocab_size=500)


PROMPT = "Hi, my Aurora X2 router keeps dropping Wi-Fi every evening. Thanks!"
ANSWER = "team: network | action: change wifi channel"


def test_prompt_tokens_are_masked_and_response_tokens_labelled(tok):
    ((ids, labels),) = encode_pairs(tok, [PROMPT], [ANSWER], max_length=200)
    fmt = PromptFormat(tok)
    (prompt_ids,) = fmt.encode_prompts([PROMPT], 200)
    (answer_ids,) = fmt.encode_responses([ANSWER])
    assert answer_ids == tok.encode(" " + ANSWER, add_special_tokens=False)
    assert ids == prompt_ids + answer_ids + [tok.eos_token_id]
    assert prompt_ids[0] == tok.bos_token_id
    assert labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert labels[len(prompt_ids) :] == [*answer_ids, tok.eos_token_id]
    assert tok.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True).strip() == ANSWER


def test_too_long_examples_lose_the_start_of_the_request_not_the_answer(tok):
    long_prompt = "Lorem ipsum dolor. " * 40 + PROMPT
    ((ids, labels),) = encode_pairs(tok, [long_prompt], [ANSWER], max_length=48)
    assert len(ids) == 48
    assert ids[0] == tok.bos_token_id
    kept = tok.decode(ids[1 : labels.index(next(t for t in labels if t != IGNORE_INDEX))])
    assert kept.endswith("Thanks!\nTriage:")
    assert kept.startswith("Support request:\n") and kept.count("Lorem") < 40  # the template stays, the request is cut
    assert tok.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True).strip() == ANSWER
    # An answer that cannot fit is cut, keeping a minimum of prompt.
    ((ids, labels),) = encode_pairs(tok, [PROMPT], [ANSWER * 10], max_length=40)
    assert len(ids) == 40 and labels.count(IGNORE_INDEX) == MIN_PROMPT_TOKENS


def test_examples_follow_the_given_prompt_format(tok):
    from clm_lib.config import PromptConfig

    fmt = PromptFormat(tok, PromptConfig(template="Q: {prompt}\nA:"))
    table = pa.table({"id": ["a"], "task": ["t"], "prompt": [PROMPT], "response": [ANSWER]})
    (ex,) = encode_table(tok, table, 96, "new", fmt=fmt)
    prompt_len = ex.labels.index(next(t for t in ex.labels if t != IGNORE_INDEX))
    assert tok.decode(ex.input_ids[1:prompt_len]) == f"Q: {PROMPT}\nA:"
    (default,) = encode_table(tok, table, 96, "new")
    assert tok.decode(default.input_ids[1:prompt_len + 3]).startswith("Support request:\n")


def test_collate_pads_right_and_masks_padding(tok):
    table = pa.table(
        {"id": ["a", "b"], "task": ["routers"] * 2, "prompt": [PROMPT, "Short?"], "response": [ANSWER] * 2}
    )
    examples = encode_table(tok, table, 96, "new")
    batch = collate(examples, pad_id=tok.pad_token_id)
    short = len(examples[1].input_ids)
    assert batch["input_ids"].shape == (2, len(examples[0].input_ids))
    assert batch["attention_mask"][1, :short].all() and not batch["attention_mask"][1, short:].any()
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, short:] == tok.pad_token_id).all()
    assert [e.row_id for e in examples] == ["a", "b"] and {e.source for e in examples} == {"new"}


def test_check_table_names_missing_columns():
    with pytest.raises(TrainingError, match=r"new_data lacks column.*response"):
        check_table(pa.table({"id": ["a"], "task": ["t"], "prompt": ["p"]}), "new_data")
    assert check_table(None, "replay_data").num_rows == 0


def test_collate_is_on_the_requested_device(tok):
    table = pa.table({"id": ["a"], "task": ["t"], "prompt": [PROMPT], "response": [ANSWER]})
    batch = collate(encode_table(tok, table, 96, "new"), tok.pad_token_id, torch.device("cpu"))
    assert all(t.device.type == "cpu" and t.dtype == torch.long for t in batch.values())
