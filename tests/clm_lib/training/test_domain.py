"""Domain adaptation (clm_lib/training/domain.py): raw-text LoRA training, merged into a base that loads and trains."""

from __future__ import annotations

import json
import pydoc_data.topics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clm_lib.config import DomainConfig, FreezeConfig, LoraConfig
from clm_lib.errors import TrainingError
from clm_lib.modeling.load import load_model
from clm_lib.training.domain import (
    RECORD_FILE,
    _examples,
    adapt_domain,
    chunk_documents,
    read_record,
    split_chunks,
    text_loss,
)
from clm_lib.training.recipe import train_update

from .helpers import records

TOPICS = ("compound", "types", "specialnames", "formatstrings", "string-methods", "debugger")
"""Python's language reference (in every CPython): text the tiny support-ticket base has never read."""
SETTINGS = DomainConfig(
    max_steps=40,
    batch_size=8,
    learning_rate=5e-3,
    warmup_steps=4,
    chunk_tokens=64,
    heldout_fraction=0.1,
    lora=LoraConfig(r=8, alpha=16),
    freeze=FreezeConfig(lowest_blocks=1),
)


def write_text(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS[:4]:
        (folder / f"{topic}.txt").write_text(pydoc_data.topics.topics[topic][:12_000])
    lines = [json.dumps({"text": pydoc_data.topics.topics[t][:6000]}) for t in TOPICS[4:]]
    (folder / "more.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "notes.bin").write_bytes(b"\0\1\2")  # another extension: skipped, listed
    return folder


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_base):
    from clm_lib.config import REPO_ROOT, load_config

    root = tmp_path_factory.mktemp("domain")
    environ = {"CLM_HOME": str(root / "home"), "CLM__MODEL__BASE_PATH": str(tiny_base)}
    cfg = load_config(REPO_ROOT / "include" / "tiny.yaml", environ=environ)
    text = write_text(root / "text")
    result = adapt_domain(cfg, text, root / "adapted", reason="test", settings=SETTINGS)
    return cfg, text, result


def test_the_held_out_text_loss_drops(adapted):
    _cfg, _text, result = adapted
    assert result.steps == 40 and result.heldout_chunks >= 1
    # A real drop on text it never trained on, not noise: the base knows tickets, not Python's reference.
    assert result.heldout_loss_after < result.heldout_loss_before - 0.5, result


def test_the_merged_base_is_the_trained_model(adapted, tiny_base):
    """Loading the saved base gives the held-out loss measured on base + adapter: the merge lost nothing."""
    _cfg, text, result = adapted
    from clm_lib.training.domain_text import read_text_folder

    model, tokenizer = load_model(result.out_dir)
    chunks = chunk_documents(tokenizer, read_text_folder(text, max_file_bytes=10**7).documents, 64)
    _train, held = split_chunks(len(chunks), SETTINGS.heldout_fraction, SETTINGS.seed)
    loss = text_loss(model, _examples(chunks, held, "eval"), tokenizer.pad_token_id, torch.device("cpu"))
    assert loss == pytest.approx(result.heldout_loss_after, abs=1e-3)
    original, _ = load_model(tiny_base)
    before = text_loss(original, _examples(chunks, held, "eval"), tokenizer.pad_token_id, torch.device("cpu"))
    assert before == pytest.approx(result.heldout_loss_before, abs=1e-3)


def test_frozen_layers_are_unchanged_byte_for_byte(adapted, tiny_base):
    _cfg, _text, result = adapted
    old = load_file(str(tiny_base / "model.safetensors"))
    new = load_file(str(result.out_dir / "model.safetensors"))
    assert old.keys() == new.keys()
    frozen = [k for k in old if k.startswith("model.layers.0.")]
    trained = [k for k in old if k.startswith("model.layers.1.") and k.endswith("proj.weight")]
    assert frozen and trained
    for key in frozen:
        assert old[key].numpy().tobytes() == new[key].numpy().tobytes(), key
    assert all(not torch.equal(old[k], new[k]) for k in trained)
    assert result.frozen_modules and all(".layers.0." in m for m in result.frozen_modules)


def test_the_record_says_how_it_was_made(adapted):
    _cfg, text, result = adapted
    record = read_record(result.out_dir)
    assert record == json.loads((result.out_dir / RECORD_FILE).read_text())
    sources = {s["path"]: s for s in record["text"]["sources"]}
    assert set(sources) == {f"{t}.txt" for t in TOPICS[:4]} | {"more.jsonl"}
    assert len(sources["compound.txt"]["sha256"]) == 64 and sources["more.jsonl"]["documents"] == 2
    assert record["text"]["skipped"] == ["notes.bin"]
    assert record["steps"] == 40 and record["tokens_seen"] > 0 and len(record["losses"]) == 40
    assert record["reason"] == "test" and record["settings"]["freeze"]["lowest_blocks"] == 1
    assert read_record(text) is None


def test_a_task_adapter_trains_on_the_adapted_base(adapted, tmp_path):
    cfg, _text, result = adapted
    cfg = cfg.model_copy(deep=True)
    cfg.model.base_path = result.out_dir
    cfg.training.max_steps = 6
    trained = train_update(
        cfg, new_data=records("routers", 24), replay_data=None, parent_adapter_dir=None,
        output_dir=tmp_path / "task", run_id="on-adapted",
    )  # fmt: skip
    assert trained.steps == 6
    model, _ = load_model(result.out_dir, trained.adapter_dir)
    assert hasattr(model, "peft_config")


def test_same_seed_same_base(adapted, tmp_path):
    cfg, text, _result = adapted
    quick = SETTINGS.model_copy(update={"max_steps": 5})
    a = adapt_domain(cfg, text, tmp_path / "a", settings=quick)
    b = adapt_domain(cfg, text, tmp_path / "b", settings=quick)
    wa, wb = load_file(str(a.out_dir / "model.safetensors")), load_file(str(b.out_dir / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.losses == b.losses


def test_an_existing_output_is_refused(adapted, tmp_path):
    cfg, text, _result = adapted
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    with pytest.raises(TrainingError, match="not an empty folder"):
        adapt_domain(cfg, text, tmp_path / "taken", settings=SETTINGS)


def test_chunks_and_split():
    class Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[10] * len(t) for t in texts]}

    chunks = chunk_documents(Tok(), ["abcde", "xyz"], 4)
    # <s> a b c d e </s> <s> x y z </s>: 12 tokens -> 3 chunks of 4
    assert chunks == [[1, 10, 10, 10], [10, 10, 2, 1], [10, 10, 10, 2]]
    train, held = split_chunks(20, 0.1, 0)
    assert len(held) == 2 and sorted(train + held) == list(range(20)) and split_chunks(20, 0.1, 0) == (train, held)
    assert split_chunks(1, 0.3, 0) == ([0], [])
