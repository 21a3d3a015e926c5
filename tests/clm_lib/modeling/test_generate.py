from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from clm_lib.config import PromptConfig, load_config
from clm_lib.demo.stream import generate_task
from clm_lib.modeling.generate import complete, context_length, generate
from clm_lib.modeling.prompt import PromptFormat

TINY = Path(__file__).resolve().parents[3] / "include" / "tiny.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    """The tiny base with an adapter trained briefly on routers: it answers those tickets and ends with EOS."""
    from clm_lib.modeling.load import load_model
    from clm_lib.training.recipe import train_update

    root = tmp_path_factory.mktemp("generate")
    cfg = load_config(TINY, environ={"CLM_HOME": str(root), "CLM__MODEL__BASE_PATH": str(tiny_base)})
    cfg.training.max_steps = 40
    rows = generate_task("routers", 200, 1)
    table = pa.Table.from_pylist([{"id": f"r{i}", **r} for i, r in enumerate(rows)])
    result = train_update(
        cfg, new_data=table, replay_data=None, parent_adapter_dir=None, output_dir=root / "run", run_id="g"
    )
    return load_model(tiny_base, result.adapter_dir)


@pytest.fixture(scope="module")
def prompts():
    return [r["prompt"] for r in generate_task("routers", 5, 3)] + ["Short one?", "billing: " + "word " * 30]


def test_greedy_is_deterministic_and_a_padded_batch_answers_as_each_prompt_alone(trained, prompts):
    model, tok = trained
    batched = complete(model, tok, prompts, max_new_tokens=32, batch_size=4)
    assert complete(model, tok, prompts, max_new_tokens=32, batch_size=4) == batched
    singles = [complete(model, tok, [p], max_new_tokens=32)[0] for p in prompts]
    assert batched == singles
    assert generate(model, tok, prompts, max_new_tokens=32, batch_size=3) == [c.text for c in singles]
    assert any(c.text.startswith("team:") and c.finish_reason == "stop" for c in batched)
    for c, p in zip(batched, prompts, strict=True):
        assert c.prompt_tokens == len(PromptFormat(tok).encode_prompts([p], 96)[0])
        assert 0 < c.completion_tokens <= 32
        assert c.finish_reason == ("length" if c.completion_tokens == 32 else "stop")


def test_the_answer_is_cut_at_the_earliest_stop_string(trained, prompts):
    model, tok = trained
    (full,) = complete(model, tok, prompts[:1], max_new_tokens=12)
    assert len(full.text) > 4, "the tiny model should say something"
    late, early = full.text[3:5], full.text[1:3]
    (cut,) = complete(model, tok, prompts[:1], max_new_tokens=12, stop=["never there", late, early, ""])
    assert cut.text == full.text[: full.text.index(early)]
    assert cut.finish_reason == "stop" and cut.completion_tokens == full.completion_tokens
    (uncut,) = complete(model, tok, prompts[:1], max_new_tokens=12, stop=["never there", ""])
    assert uncut == full


def test_sampling_is_reproducible_with_a_seed_and_leaves_the_global_generator_alone(trained, prompts):
    model, tok = trained
    greedy = generate(model, tok, prompts, max_new_tokens=16)
    kw = {"max_new_tokens": 16, "temperature": 1.5, "top_p": 1.0}
    state = torch.get_rng_state()
    first = generate(model, tok, prompts, seed=7, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate(model, tok, prompts, seed=7, **kw) == first
    assert first != greedy
    # Unseeded sampling draws from the global generator and moves it on.
    generate(model, tok, prompts[:1], **kw)
    assert not torch.equal(torch.get_rng_state(), state)


def test_a_format_given_overrides_the_models_own(trained, prompts):
    model, tok = trained
    other = PromptFormat(tok, PromptConfig(template="A preamble the demo lacks, many words long.\n{prompt}\nA:"))
    (own,) = complete(model, tok, prompts[:1], max_new_tokens=8)
    (given,) = complete(model, tok, prompts[:1], max_new_tokens=8, fmt=other)
    assert given.prompt_tokens == len(other.encode_prompts(prompts[:1], 100)[0]) != own.prompt_tokens


def test_bad_arguments_are_value_errors_and_the_mode_is_restored(trained, prompts):
    model, tok = trained
    limit = context_length(model)
    with pytest.raises(ValueError, match=f"context length of {limit} tokens"):
        complete(model, tok, prompts, max_new_tokens=limit)
    with pytest.raises(ValueError, match="2 prompts but 1 task ids"):
        complete(model, tok, prompts[:2], max_new_tokens=4, tasks=["routers"])
    assert complete(model, tok, [], max_new_tokens=4) == []
    model.train()
    try:
        complete(model, tok, prompts[:1], max_new_tokens=2)
        assert model.training
    finally:
        model.eval()
