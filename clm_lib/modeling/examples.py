"""Labelled examples: record tables to teacher-forced token batches, with the loss on response tokens only.

Training learns from them and evaluation scores them, so both see exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from clm_lib.errors import TrainingError
from clm_lib.modeling.prompt import PromptFormat, special_ids

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (prompt and padding); PyTorch's cross-entropy skips it."""
REQUIRED_COLUMNS = ("id", "task", "prompt", "response")
MIN_PROMPT_TOKENS = 8
"""When an example is too long, at least this many prompt tokens are kept (the end of the prompt)."""


@dataclass(frozen=True)
class Example:
    """One tokenized example."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    """``IGNORE_INDEX`` on prompt tokens, the token id on response tokens and the closing EOS."""
    task: str
    source: str
    """``new`` (this update's data), ``replay`` (the buffer of earlier data) or ``eval``."""
    row_id: str


def check_table(table: pa.Table | None, name: str) -> pa.Table:
    """Return ``table`` if it has the record columns, else raise :class:`TrainingError` naming what is missing."""
    if table is None:
        return pa.table({c: pa.array([], pa.string()) for c in REQUIRED_COLUMNS})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainingError(f"{name} lacks column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")
    return table


def encode_pairs(
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int,
    *,
    fmt: PromptFormat | None = None,
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per pair in format ``fmt`` (default: the demo template): prompt tokens masked, response
    tokens + EOS labelled.

    Too long an example loses the start of its request first, the format around it kept
    (:meth:`PromptFormat.encode_prompts`); only a response longer than ``max_length - MIN_PROMPT_TOKENS`` is itself
    cut (its end, EOS included, is then never learned).
    """
    fmt = fmt or PromptFormat(tokenizer)
    _, eos, _ = special_ids(tokenizer)
    out = []
    for prompt, answer in zip(prompts, fmt.encode_responses(responses), strict=True):
        answer = [*answer, eos][: max_length - MIN_PROMPT_TOKENS]
        (prompt_ids,) = fmt.encode_prompts([prompt], max_length - len(answer))
        out.append((prompt_ids + answer, [IGNORE_INDEX] * len(prompt_ids) + answer))
    return out


def encode_table(
    tokenizer, table: pa.Table, max_length: int, source: str, *, fmt: PromptFormat | None = None
) -> list[Example]:
    """Tokenize every row of a record table (columns ``id, task, prompt, response``) in format ``fmt``."""
    cols = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}
    pairs = encode_pairs(tokenizer, cols["prompt"], cols["response"], max_length, fmt=fmt)
    return [
        Example(tuple(ids), tuple(labels), task, source, row_id)
        for (ids, labels), task, row_id in zip(pairs, cols["task"], cols["id"], strict=True)
    ]


def collate(examples: Sequence[Example], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padding is masked out of attention and loss."""
    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
