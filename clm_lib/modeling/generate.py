"""Generation: answers to raw requests, in batches, greedy or sampled, with stop strings.

The one place that calls ``model.generate``: evaluation, serving, the MLflow pyfunc (and so the golden set, which
asks a serving slot) all answer through it, so at temperature 0 a slot answers exactly what evaluation scored.

Prompts are rendered in the model's prompt format (:mod:`clm_lib.modeling.prompt`), left-padded so every row's
answer starts at the same position; a request too long loses its start (never the format around it) to leave room
for ``max_new_tokens``. A model with per-task adapters (:mod:`clm_lib.modeling.task_adapters`) answers each prompt
with its task's adapter, all in one mixed batch: by the task given for it, else by its learned router.

Light to import (torch is imported by the call): the serving API takes :class:`Completion` from here.

Stop strings are applied to the decoded answer (the earliest one found cuts it), not while decoding, so
``completion_tokens`` counts what the model generated up to EOS or the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clm_lib.modeling import architectures
from clm_lib.modeling.prompt import PromptFormat, prompt_format, special_ids

DEFAULT_CONTEXT = 2048
"""Context length assumed for a model whose config does not say."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` (end of answer or a stop string) or ``length`` (``max_new_tokens`` reached)."""


def context_length(model: Any) -> int:
    """Tokens the model can attend to: prompt and answer together."""
    return architectures.context_length(model.config) or DEFAULT_CONTEXT


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def complete(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    tasks: Sequence[str | None] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    fmt: PromptFormat | None = None,
) -> list[Completion]:
    """One :class:`Completion` per prompt (a raw request: the prompt format is applied here).

    ``temperature`` 0 is greedy decoding; above 0 samples with ``top_p``, reproducibly when ``seed`` is given
    (the global torch generator is left as it was). ``tasks`` (one per prompt, ``None`` for unknown) picks per-task
    adapters. ``max_length`` caps prompt + answer (default: the model's context). ``fmt`` overrides the model's
    own prompt format. Raises ``ValueError`` when ``max_new_tokens`` leaves no room for a prompt.
    """
    import torch

    from clm_lib.modeling.task_adapters import adapter_kwargs

    limit = max_length or context_length(model)
    if max_new_tokens >= limit:
        raise ValueError(f"max_tokens must be below the model's context length of {limit} tokens")
    if tasks is not None and len(tasks) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(tasks)} task ids")
    fmt = fmt or prompt_format(model, tokenizer)
    bos, eos, pad = special_ids(tokenizer)
    device = next(model.parameters()).device
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
    seeded = seed is not None and temperature > 0
    out: list[Completion] = []
    was_training = model.training
    model.eval()
    # A seeded call restores the global generators afterwards, so it does not reseed every later unseeded one.
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seeded)
    try:
        with fork, torch.inference_mode():
            if seeded:
                torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                batch = list(prompts[start : start + batch_size])
                batch_tasks = None if tasks is None else tasks[start : start + batch_size]
                encoded = fmt.encode_prompts(batch, limit - max_new_tokens)
                width = max(len(ids) for ids in encoded)
                input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
                mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
                generated = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=eos,
                    bos_token_id=bos,
                    **sampling,
                    **adapter_kwargs(model, batch, batch_tasks),
                )
                for ids, row in zip(encoded, generated[:, width:].tolist(), strict=True):
                    ended = eos in row
                    if ended:
                        row = row[: row.index(eos)]
                    text = fmt.parse_response(tokenizer.decode(row, skip_special_tokens=True))
                    text, stopped = _cut_at_stop(text, stop)
                    out.append(Completion(text, len(ids), len(row), "stop" if ended or stopped else "length"))
    finally:
        model.train(was_training)
    return out


def generate(model, tokenizer, prompts: Sequence[str], **kwargs: Any) -> list[str]:
    """The answers of :func:`complete` (same arguments), one string per prompt."""
    return [c.text for c in complete(model, tokenizer, prompts, **kwargs)]
