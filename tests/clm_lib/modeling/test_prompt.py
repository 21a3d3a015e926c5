from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from clm_lib.config import DEFAULT_PROMPT_TEMPLATE, PromptConfig, load_config
from clm_lib.demo.stream import generate_task
from clm_lib.errors import ConfigError, TrainingError
from clm_lib.modeling.corpus import support_corpus
from clm_lib.modeling.prompt import (
    PROMPT_FILE,
    PromptFormat,
    check_continuation,
    describe,
    load_prompt_config,
    parse_response,
    prompt_format,
    same_answer,
    save_prompt_config,
)
from clm_lib.modeling.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[3]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(support_corpus(300, 0), vocab_size=400)


@pytest.fixture(scope="module")
def chat_tok():
    tok = train_tokenizer(support_corpus(300, 0), vocab_size=400)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_the_default_template_is_the_demos(tok):
    fmt = PromptFormat(tok)
    assert fmt.config.kind == "template" and fmt.config.template == DEFAULT_PROMPT_TEMPLATE
    assert fmt.render("  My router is dead.\n") == "Support request:\nMy router is dead.\nTriage:"
    assert fmt.render_example(" hi ", " team: network ") == ("Support request:\nhi\nTriage:", " team: network")
    assert fmt.parse_response(" team: network | action: x \n") == parse_response("team: network | action: x")
    assert same_answer(" team: a\n", "team: a ") and not same_answer("team: a", "team: b")


def test_a_plain_template_is_configurable(tok):
    fmt = PromptFormat(tok, PromptConfig(template="{{json}} Q: {prompt}\nA:"))
    assert fmt.render(" why? ") == "{json} Q: why?\nA:"
    (ids,) = fmt.encode_prompts(["why?"], 100)
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "{json} Q: why?\nA:"


@pytest.mark.parametrize(
    ("template", "why"),
    [("Request: {request}", "found \\['request'\\]"), ("no field at all", "found none"), ("{prompt} {", "valid")],
)
def test_a_template_without_exactly_prompt_is_a_config_error_naming_the_field(template, why):
    with pytest.raises(ConfigError, match=rf"model\.prompt\.template: .*{why}"):
        load_config(REPO / "include" / "clm.yaml", environ={"CLM__MODEL__PROMPT__TEMPLATE": json.dumps(template)})


def test_a_system_prompt_needs_the_chat_kind():
    with pytest.raises(ConfigError, match=r"model\.prompt.*system is only used with kind: chat"):
        load_config(REPO / "include" / "clm.yaml", environ={"CLM__MODEL__PROMPT__SYSTEM": "Be brief."})
    cfg = load_config(
        REPO / "include" / "clm.yaml",
        environ={"CLM__MODEL__PROMPT__KIND": "chat", "CLM__MODEL__PROMPT__SYSTEM": "Be brief."},
    )
    assert cfg.model.prompt == PromptConfig(kind="chat", system="Be brief.")


def test_the_chat_kind_uses_the_tokenizers_chat_template(chat_tok):
    fmt = PromptFormat(chat_tok, PromptConfig(kind="chat", system="Be brief."))
    rendered = fmt.render(" My router is dead. ")
    assert rendered == "<s><|system|>\nBe brief.\n<|user|>\nMy router is dead.\n<|assistant|>\n"
    assert fmt.render_response(" team: network ") == "team: network"  # the template already ends the line
    (ids,) = fmt.encode_prompts(["My router is dead."], 100)
    # The template writes BOS itself; it is not doubled.
    assert ids[0] == chat_tok.bos_token_id and chat_tok.bos_token_id not in ids[1:]
    # Cut from the left, BOS stays first and the generation prompt stays last.
    (short,) = fmt.encode_prompts(["word " * 50], 12)
    assert len(short) == 12 and short[0] == chat_tok.bos_token_id and chat_tok.decode(short).endswith("<|assistant|>\n")
    no_system = PromptFormat(chat_tok, PromptConfig(kind="chat"))
    assert no_system.render("hi") == "<s><|user|>\nhi\n<|assistant|>\n"


def test_a_long_request_loses_its_start_not_the_format_around_it(tok, chat_tok):
    request = "Lorem ipsum dolor sit amet. " * 20 + "My router is dead."
    chat = PromptFormat(chat_tok, PromptConfig(kind="chat", system="Be brief."))
    (ids,) = chat.encode_prompts([request], 60)
    text = chat_tok.decode(ids)
    # The system prompt and the role markers stay; the request keeps its end.
    assert len(ids) == 60 and text.startswith("<s><|system|>\nBe brief.\n<|user|>\n")
    assert text.endswith("My router is dead.\n<|assistant|>\n")
    kept = text.removeprefix("<s><|system|>\nBe brief.\n<|user|>\n").removesuffix("\n<|assistant|>\n")
    assert request.endswith(kept) and len(kept) < len(request)
    plain = PromptFormat(tok)
    (ids,) = plain.encode_prompts([request], 30)
    assert len(ids) == 30 and tok.decode(ids).startswith("<s>Support request:\n")
    assert tok.decode(ids).endswith("My router is dead.\nTriage:")
    # A prompt that fits is the rendering as it is; where the format itself does not fit, the rendering is cut.
    assert chat.encode_prompts(["hi"], 40) == [chat_tok(chat.render("hi"), add_special_tokens=False)["input_ids"]]
    (short,) = chat.encode_prompts([request], 8)
    assert len(short) == 8 and chat_tok.decode(short).endswith("istant|>\n")


def test_a_chat_template_that_rewrites_the_request_is_cut_from_the_left(chat_tok):
    from transformers import PreTrainedTokenizerFast

    shouting = PreTrainedTokenizerFast(tokenizer_object=chat_tok.backend_tokenizer, bos_token="<s>", eos_token="</s>")
    shouting.chat_template = CHAT_TEMPLATE.replace("m['content']", "m['content'] | upper")
    fmt = PromptFormat(shouting, PromptConfig(kind="chat", system="Be brief."))
    (ids,) = fmt.encode_prompts(["word " * 50 + "end"], 20)
    assert len(ids) == 20 and shouting.decode(ids).endswith(" END\n<|assistant|>\n")


def test_a_model_keeps_the_format_it_was_trained_with():
    chat = PromptConfig(kind="chat", system="Triage.")
    check_continuation(chat, PromptConfig(kind="chat", system="Triage.", template="Q: {prompt}"), "runs/r1/adapter")
    assert describe(chat) == {"kind": "chat", "system": "Triage."}
    assert describe(PromptConfig()) == {"kind": "template", "template": DEFAULT_PROMPT_TEMPLATE}
    with pytest.raises(TrainingError) as refused:
        check_continuation(chat, PromptConfig(), "runs/r1/adapter")
    assert str(refused.value) == (
        "model.prompt is kind: template ('Support request:\\n{prompt}\\nTriage:'), but the adapter this update "
        "continues (runs/r1/adapter) was trained with kind: chat (system prompt 'Triage.'); a model keeps the prompt "
        "format it was trained with. Set model.prompt back to kind: chat (system prompt 'Triage.'), or start a new "
        "model from the base (another registry.model_name) in the new format"
    )
    with pytest.raises(TrainingError, match=r"model.prompt is kind: chat \(no system prompt\), but"):
        check_continuation(chat, PromptConfig(kind="chat"), "a")
    with pytest.raises(TrainingError, match=r"kind: template \('Q: \{prompt\}'\), but .* with kind: template"):
        check_continuation(PromptConfig(), PromptConfig(template="Q: {prompt}"), "a")


def test_the_chat_kind_needs_a_chat_template(tok):
    with pytest.raises(TrainingError, match="has no chat template"):
        PromptFormat(tok, PromptConfig(kind="chat"))


def test_the_format_is_saved_with_an_adapter_and_read_back(tmp_path):
    assert load_prompt_config(None) == load_prompt_config(tmp_path) == PromptConfig()  # older adapters: the demo's
    chat = PromptConfig(kind="chat", system="Be brief.")
    save_prompt_config(chat, tmp_path)
    assert load_prompt_config(tmp_path) == chat
    (tmp_path / PROMPT_FILE).write_text('{"kind": "template", "template": "nothing"}')
    with pytest.raises(TrainingError, match=f"{PROMPT_FILE} is not a valid prompt format"):
        load_prompt_config(tmp_path)


def _records(task: str, n: int, seed: int) -> pa.Table:
    rows = generate_task(task, n, seed)
    return pa.Table.from_pylist([{"id": f"{task}-{seed}-{i}", **r} for i, r in enumerate(rows)])


def test_a_chat_format_is_trained_saved_loaded_and_used_everywhere(tmp_path, tiny_base):
    """Training learns the configured format, the adapter keeps it, and every loaded copy answers in it."""
    from clm_lib.evaluation.metrics import score_examples
    from clm_lib.modeling.generate import complete
    from clm_lib.modeling.load import load_model
    from clm_lib.training.recipe import train_update

    base = tmp_path / "chat-base"
    shutil.copytree(tiny_base, base)
    base_model, base_tok = load_model(base)
    base_tok.chat_template = CHAT_TEMPLATE
    base_tok.save_pretrained(str(base))
    environ = {"CLM_HOME": str(tmp_path / "home"), "CLM__MODEL__BASE_PATH": str(base)}
    cfg = load_config(
        REPO / "include" / "tiny.yaml",
        environ={**environ, "CLM__MODEL__PROMPT__KIND": "chat", "CLM__MODEL__PROMPT__SYSTEM": "Triage."},
    )
    cfg.training.max_steps = 30
    result = train_update(
        cfg, new_data=_records("routers", 120, 1), replay_data=None, parent_adapter_dir=None,
        output_dir=tmp_path / "run", run_id="chat",
    )  # fmt: skip
    assert load_prompt_config(result.adapter_dir) == cfg.model.prompt
    model, tok = load_model(base, result.adapter_dir)
    fmt = prompt_format(model, tok)
    assert fmt.config == cfg.model.prompt
    held = _records("routers", 12, 9)
    in_chat = score_examples(model, tok, held, batch_size=12)
    in_template = score_examples(model, tok, held, batch_size=12, fmt=PromptFormat(tok))
    # It learned to answer the chat format: scored in it, the loss is lower than in a format it never saw.
    assert sum(s.nll for s in in_chat) < sum(s.nll for s in in_template)
    (done,) = complete(model, tok, [held["prompt"][0].as_py()], max_new_tokens=24)
    assert done.prompt_tokens == len(fmt.encode_prompts([held["prompt"][0].as_py()], 100)[0])
    # A base model loaded without an adapter keeps the demo template: its format is the adapter's, not the tokenizer's.
    assert prompt_format(base_model, base_tok).config == PromptConfig()
