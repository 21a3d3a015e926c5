"""From record tables to token batches: encoding with the response-only loss mask, collation, and sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from clm_lib.errors import TrainingError
from clm_lib.training.formatting import format_prompt, format_response

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (prompt and padding); PyTorch's cross-entropy skips it."""
REQUIRED_COLUMNS = ("id", "task", "prompt", "response")
MIN_PROMPT_TOKENS = 8
"""When an example is too long, at least this many prompt tokens are kept (the end of the prompt)."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    """``IGNORE_INDEX`` on prompt tokens, the token id on response tokens and the closing EOS."""
    task: str
    source: str
    """``new`` (this update's data) or ``replay`` (the buffer of earlier data)."""
    row_id: str


@dataclass
class Batch:
    """Examples of one optimizer step; ``inputs`` are their collated tensors, filled in by the loop."""

    examples: list[Example]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def count(self, source: str) -> int:
        return sum(ex.source == source for ex in self.examples)


def check_table(table: pa.Table | None, name: str) -> pa.Table:
    """Return ``table`` if it has the record columns, else raise :class:`TrainingError` naming what is missing."""
    if table is None:
        return pa.table({c: pa.array([], pa.string()) for c in REQUIRED_COLUMNS})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainingError(f"{name} lacks column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")
    return table


def special_ids(tokenizer) -> tuple[int | None, int, int]:
    """(bos, eos, pad) ids; pad falls back to eos, since padded positions are masked anyway."""
    if tokenizer.eos_token_id is None:
        raise TrainingError("the tokenizer has no EOS token, so the model could not learn where an answer ends")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return tokenizer.bos_token_id, tokenizer.eos_token_id, pad


def encode_prompts(tokenizer, prompts: Sequence[str], max_prompt_tokens: int) -> list[list[int]]:
    """Token ids of formatted prompts, BOS first, cut from the left to ``max_prompt_tokens``.

    Cutting from the left keeps the end of the template, where the answer starts, and the latest words.
    """
    bos, _, _ = special_ids(tokenizer)
    texts = [format_prompt(p) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    head = [bos] if bos is not None else []
    keep = max(1, max_prompt_tokens - len(head))
    return [head + ids[-keep:] for ids in encoded]


def encode_pairs(
    tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per pair: prompt tokens masked, response tokens + EOS labelled.

    Too long an example loses prompt tokens from the left first; only a response longer than
    ``max_length - MIN_PROMPT_TOKENS`` is itself cut (its end, EOS included, is then never learned).
    """
    _, eos, _ = special_ids(tokenizer)
    texts = [format_response(r) for r in responses]
    answers = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out = []
    for prompt, answer in zip(prompts, answers, strict=True):
        answer = [*answer, eos][: max_length - MIN_PROMPT_TOKENS]
        (prompt_ids,) = encode_prompts(tokenizer, [prompt], max_length - len(answer))
        out.append((prompt_ids + answer, [IGNORE_INDEX] * len(prompt_ids) + answer))
    return out


def encode_table(tokenizer, table: pa.Table, max_length: int, source: str) -> list[Example]:
    """Tokenize every row of a record table (columns ``id, task, prompt, response``)."""
    cols = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}
    pairs = encode_pairs(tokenizer, cols["prompt"], cols["response"], max_length)
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


class EpochSampler:
    """Draws indices in shuffled epochs: every example once per epoch, a new order each epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so the state is two integers and a resumed run draws
    exactly what the interrupted one would have.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty set")
        self.size, self.seed = size, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.position == self.size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            step = min(k - len(out), self.size - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()
