"""Per-task scores of a model on held-out records.

Exact-match accuracy is computed without generating. Greedy decoding emits, at each position, the argmax token
given what it emitted before. So greedy output equals the reference response (and stops, with EOS, right after it)
if and only if, in one teacher-forced forward pass over prompt + reference + EOS, the argmax at every response
position is the next reference token: by induction, the prefixes greedy decoding sees are then exactly the
reference prefixes. One batched forward pass per example therefore gives the same verdict as generating
(``tests/clm_lib/evaluation/test_metrics.py`` checks this against :func:`clm_lib.modeling.generate.generate`).
Two fine points: the verdict is on tokens, so a greedy output that spells the reference with other tokens counts
as wrong (stricter, never more lenient); and floating-point differences between a padded batch and step-by-step
decoding could flip an exact tie between two logits, which does not happen in practice.

A model with per-task adapters (``clm_lib.modeling.task_adapters``) answers each prompt with its task's adapter, all
in one mixed batch. Scoring routes with the learned router by default, as serving does (no task id at inference),
so a routing mistake costs accuracy; ``route_by_task=True`` uses each record's task instead.

The other task metrics (``clm_lib/evaluation/task_metrics.py``: token F1, ROUGE-L...) need the answer itself, so
``score_tasks(..., all_metrics=True)`` generates it, greedily, for the examples the teacher-forced pass found wrong
only: a right one's greedy answer is its reference, by the argument above. Their ``exact_match`` compares text, so
it can only exceed :attr:`TaskScore.accuracy` where greedy output spells the reference with other tokens (the
answer a user gets is then right, and the golden set counts it so too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from clm_lib.evaluation.task_metrics import score_all
from clm_lib.modeling.examples import IGNORE_INDEX, check_table, collate, encode_table
from clm_lib.modeling.generate import complete, context_length
from clm_lib.modeling.prompt import PromptFormat, prompt_format, special_ids
from clm_lib.modeling.task_adapters import routing_of


@dataclass(frozen=True)
class TaskScore:
    accuracy: float
    """Exact match of the greedy answer, 0-100."""
    token_accuracy: float
    """Share of response tokens (EOS included) predicted right given the reference prefix, 0-100."""
    loss: float
    """Mean cross-entropy per response token."""
    n: int
    """Examples scored."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Every task metric by name (``task_metrics.METRICS``), 0-100, on the greedy answers; empty unless asked."""


def eval_subset(eval_data: pa.Table, max_examples_per_task: int) -> pa.Table:
    """The first ``max_examples_per_task`` rows of each task by id: the same rows every update, so scores compare."""
    parts = []
    for task in sorted(set(eval_data.column("task").to_pylist())):
        rows = eval_data.filter(pc.equal(eval_data.column("task"), task)).sort_by("id")
        parts.append(rows.slice(0, max_examples_per_task))
    return pa.concat_tables(parts) if parts else eval_data


def _max_length(model, max_length: int | None) -> int:
    return max_length or context_length(model)


@dataclass(frozen=True)
class ExampleScore:
    row_id: str
    task: str
    exact: bool
    """Greedy decoding would reproduce the reference exactly (see the module docstring)."""
    tokens_right: int
    tokens: int
    nll: float
    """Summed cross-entropy over the response tokens."""


def _adapter_names(model, prompts: Sequence[str], tasks: Sequence[str | None] | None) -> list[str] | None:
    """Per prompt, the adapter that answers it (``None`` for a model with a single adapter)."""
    routing = routing_of(model)
    return routing.assign(prompts, tasks) if routing is not None else None


def _routed(names: list[str] | None, rows: Sequence[int]) -> dict[str, list[str]]:
    return {"adapter_names": [names[i] for i in rows]} if names is not None else {}


@torch.inference_mode()
def score_examples(
    model,
    tokenizer,
    records: pa.Table,
    *,
    batch_size: int,
    max_length: int | None = None,
    route_by_task: bool = False,
    fmt: PromptFormat | None = None,
) -> list[ExampleScore]:
    """Score every row of ``records`` (columns ``id, task, prompt, response``) in teacher-forced forward passes.

    The prompts are in the model's own prompt format unless ``fmt`` says otherwise.
    """
    records = check_table(records, "eval_data")
    fmt = fmt or prompt_format(model, tokenizer)
    examples = encode_table(tokenizer, records, _max_length(model, max_length), "eval", fmt=fmt)
    names = _adapter_names(
        model, records.column("prompt").to_pylist(), records.column("task").to_pylist() if route_by_task else None
    )
    pad = special_ids(tokenizer)[2]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[ExampleScore | None] = [None] * len(examples)
    # Similar lengths in a batch waste less compute on padding.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        inputs = collate([examples[i] for i in rows], pad, device)
        logits = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **_routed(names, rows)
        ).logits[:, :-1]
        target = inputs["labels"][:, 1:]
        scored = target != IGNORE_INDEX
        hits = ((logits.argmax(-1) == target) & scored).sum(1).tolist()
        counts = scored.sum(1).tolist()
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=IGNORE_INDEX, reduction="none")
        for j, i in enumerate(rows):
            ex = examples[i]
            scores[i] = ExampleScore(ex.row_id, ex.task, hits[j] == counts[j], hits[j], counts[j], float(nll[j].sum()))
    model.train(was_training)
    return [s for s in scores if s is not None]


def greedy_answers(
    model,
    tokenizer,
    records: pa.Table,
    scored: Sequence[ExampleScore],
    *,
    batch_size: int,
    max_length: int | None = None,
    route_by_task: bool = False,
    fmt: PromptFormat | None = None,
) -> dict[str, str]:
    """Row id -> the greedy answer of each scored row: its reference where the verdict was exact, else generated."""
    rows = {r["id"]: r for r in records.select(["id", "task", "prompt", "response"]).to_pylist()}
    answers = {s.row_id: rows[s.row_id]["response"].strip() for s in scored if s.exact}
    wrong = [s for s in scored if not s.exact]
    if not wrong:
        return answers
    limit = _max_length(model, max_length)
    # Room for the reference (EOS included) and as much again: a longer answer is cut, and scored as it stands.
    max_new_tokens = min(2 * max(s.tokens for s in wrong), limit // 2)
    generated = complete(
        model,
        tokenizer,
        [rows[s.row_id]["prompt"] for s in wrong],
        max_new_tokens=max_new_tokens,
        tasks=[rows[s.row_id]["task"] for s in wrong] if route_by_task else None,
        batch_size=batch_size,
        max_length=limit,
        fmt=fmt,
    )
    answers.update((s.row_id, done.text) for s, done in zip(wrong, generated, strict=True))
    return answers


def score_tasks(
    model,
    tokenizer,
    eval_data: pa.Table,
    *,
    max_examples_per_task: int,
    batch_size: int,
    max_length: int | None = None,
    route_by_task: bool = False,
    fmt: PromptFormat | None = None,
    all_metrics: bool = False,
) -> dict[str, TaskScore]:
    """Task -> :class:`TaskScore` on a stable subset of ``eval_data`` (columns ``id, task, prompt, response``).

    ``max_length`` should be the training one (``model.max_length``); default: the model's context size.
    ``all_metrics`` also generates the answers the teacher-forced pass found wrong and fills
    :attr:`TaskScore.metrics`.
    """
    subset = eval_subset(check_table(eval_data, "eval_data"), max_examples_per_task)
    by_task: dict[str, list[ExampleScore]] = {}
    scored = score_examples(
        model, tokenizer, subset, batch_size=batch_size, max_length=max_length, route_by_task=route_by_task, fmt=fmt
    )
    for s in scored:
        by_task.setdefault(s.task, []).append(s)
    answers: dict[str, str] = {}
    references: dict[str, str] = {}
    if all_metrics:
        answers = greedy_answers(
            model,
            tokenizer,
            subset,
            scored,
            batch_size=batch_size,
            max_length=max_length,
            route_by_task=route_by_task,
            fmt=fmt,
        )
        references = dict(zip(subset.column("id").to_pylist(), subset.column("response").to_pylist(), strict=True))
    out = {}
    for task, scores in sorted(by_task.items()):
        tokens = max(1, sum(s.tokens for s in scores))
        metrics = {}
        if all_metrics:
            metrics = score_all([answers[s.row_id] for s in scores], [references[s.row_id] for s in scores])
        out[task] = TaskScore(
            accuracy=100.0 * sum(s.exact for s in scores) / len(scores),
            token_accuracy=100.0 * sum(s.tokens_right for s in scores) / tokens,
            loss=sum(s.nll for s in scores) / tokens,
            n=len(scores),
            metrics=metrics,
        )
    return out
