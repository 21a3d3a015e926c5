"""The prompt format: how a request becomes model input and how the model's output becomes an answer.

One format serves training (what the adapter learns to answer), evaluation, serving, the MLflow pyfunc and the
golden set, so a version answers live exactly what it was trained and scored on. It is configured by
``model.prompt`` (:class:`clm_lib.config.PromptConfig`): a plain template (the demo's) or the tokenizer's chat
template. Training saves it next to the adapter (:data:`PROMPT_FILE`) and :func:`clm_lib.modeling.load.load_model`
attaches it to the model it loads, so a registered version keeps its own format whatever the config says later.

The response is tokenized separately from the prompt (a template's response with a leading space), so the
prompt/response token boundary is the same when training, scoring and generating: BPE would otherwise merge across
it differently each time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from clm_lib.config import PromptConfig
from clm_lib.errors import TrainingError

PROMPT_FILE = "clm_prompt.json"
"""The format an adapter was trained with, saved in its folder. An adapter without one used the demo template."""
PROMPT_ATTR = "clm_prompt"
"""Attribute of a loaded model holding its :class:`PromptConfig`."""
_REQUEST = "\ue000clm-request\ue000"
"""Stands for the request when a format is rendered to find what surrounds it (private-use characters)."""


def special_ids(tokenizer) -> tuple[int | None, int, int]:
    """(bos, eos, pad) ids; pad falls back to eos, since padded positions are masked anyway."""
    if tokenizer.eos_token_id is None:
        raise TrainingError("the tokenizer has no EOS token, so the model could not learn where an answer ends")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return tokenizer.bos_token_id, tokenizer.eos_token_id, pad


def same_answer(answer: str, reference: str) -> bool:
    """Exact match as evaluation counts it: a parsed answer against a reference response, whitespace around aside."""
    return parse_response(answer) == reference.strip()


def parse_response(generated: str) -> str:
    """The answer in generated text (the text after the prompt, up to EOS), in every format."""
    return generated.strip()


class PromptFormat:
    """A :class:`PromptConfig` bound to a tokenizer (a chat template lives on the tokenizer)."""

    def __init__(self, tokenizer, config: PromptConfig | None = None):
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        if self.config.kind == "chat" and not getattr(tokenizer, "chat_template", None):
            raise TrainingError(
                f"model.prompt.kind is chat but the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat "
                "template; use kind: template"
            )

    def render(self, prompt: str) -> str:
        """The model input for a request, up to where the answer starts."""
        if self.config.kind == "template":
            return self.config.template.format(prompt=prompt.strip())
        messages = [{"role": "user", "content": prompt.strip()}]
        if self.config.system is not None:
            messages.insert(0, {"role": "system", "content": self.config.system})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def render_response(self, response: str) -> str:
        """The answer as the model is trained to write it, right after :meth:`render` (EOS is added as a token)."""
        # A chat template's generation prompt already ends where the assistant's text begins.
        return " " + response.strip() if self.config.kind == "template" else response.strip()

    def render_example(self, prompt: str, response: str) -> tuple[str, str]:
        """(prompt text, response text) of a training example; the two are tokenized separately."""
        return self.render(prompt), self.render_response(response)

    def parse_response(self, generated: str) -> str:
        """Inverse of :meth:`render_response` for generated text."""
        return parse_response(generated)

    def encode_prompts(self, prompts: Sequence[str], max_prompt_tokens: int) -> list[list[int]]:
        """Token ids of rendered prompts, BOS first, at most ``max_prompt_tokens`` of them.

        A prompt too long loses the start of the request: the format around it (a chat template's system prompt
        and role markers, a template's text) stays, so a long request is still a well-formed turn, and the end of
        the request, where the answer starts, and its latest words are kept. Where even the format does not fit,
        the rendering is cut from the left.
        """
        bos, _, _ = special_ids(self.tokenizer)
        texts = [self.render(p) for p in prompts]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        head = [bos] if bos is not None else []
        keep = max(1, max_prompt_tokens - len(head))
        out = []
        for prompt, ids in zip(prompts, encoded, strict=True):
            ids = self._without_bos(ids, head)
            if len(ids) > keep and (frame := self._frame) is not None and len(frame[0]) + len(frame[1]) < keep:
                prefix, suffix = frame
                request = self.tokenizer(prompt.strip(), add_special_tokens=False)["input_ids"]
                ids = prefix + request[-(keep - len(prefix) - len(suffix)) :] + suffix
            out.append(head + ids[-keep:])
        return out

    @staticmethod
    def _without_bos(ids: list[int], head: list[int]) -> list[int]:
        # Chat templates often write the BOS token themselves; it is put back as the head, never twice.
        return ids[1:] if head and ids[:1] == head else ids

    @cached_property
    def _frame(self) -> tuple[list[int], list[int]] | None:
        """Token ids of the rendering before and after the request (BOS left out); ``None`` when the request
        cannot be found in it (a chat template that rewrites the message)."""
        parts = self.render(_REQUEST).split(_REQUEST)
        if len(parts) != 2:
            return None
        prefix, suffix = (self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in parts)
        bos, _, _ = special_ids(self.tokenizer)
        return self._without_bos(prefix, [bos] if bos is not None else []), suffix

    def encode_responses(self, responses: Sequence[str]) -> list[list[int]]:
        """Token ids of rendered responses, without EOS."""
        texts = [self.render_response(r) for r in responses]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def describe(config: PromptConfig) -> dict[str, Any]:
    """What decides how ``config`` renders a request: its kind and the one field that kind uses (the template, or
    the system prompt). Two formats are the same when these are; lineage records this (an MLflow tag)."""
    if config.kind == "chat":
        return {"kind": "chat", "system": config.system}
    return {"kind": "template", "template": config.template}


def check_continuation(parent: PromptConfig, config: PromptConfig, parent_dir: str | Path) -> None:
    """Refuse to continue an adapter trained in ``parent``'s format with another (``config``, ``model.prompt``).

    The adapter learned to answer in its format; continuing it in another would leave a version answering one
    format in serving and the golden set while its earlier rows of the forgetting matrix were scored in another.
    """
    if describe(parent) == describe(config):
        return
    raise TrainingError(
        f"model.prompt is {_words(config)}, but the adapter this update continues ({parent_dir}) was trained with "
        f"{_words(parent)}; a model keeps the prompt format it was trained with. Set model.prompt back to "
        f"{_words(parent)}, or start a new model from the base (another registry.model_name) in the new format"
    )


def _words(config: PromptConfig) -> str:
    if config.kind == "chat":
        system = "no system prompt" if config.system is None else f"system prompt {config.system!r}"
        return f"kind: chat ({system})"
    return f"kind: template ({config.template!r})"


def prompt_format(model: Any, tokenizer) -> PromptFormat:
    """The format ``model`` was trained with (attached by ``load_model``; the demo template for any other model)."""
    return PromptFormat(tokenizer, getattr(model, PROMPT_ATTR, None))


def save_prompt_config(config: PromptConfig, folder: str | Path) -> Path:
    """Write ``config`` into an adapter folder, so the adapter is loaded with the format it learned."""
    path = Path(folder) / PROMPT_FILE
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    return path


def load_prompt_config(folder: str | Path | None) -> PromptConfig:
    """The format saved in an adapter folder; the demo template when there is none (no folder, or an older one)."""
    path = Path(folder) / PROMPT_FILE if folder is not None else None
    if path is None or not path.exists():
        return PromptConfig()
    try:
        return PromptConfig.model_validate(json.loads(path.read_text()))
    except ValueError as exc:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
        raise TrainingError(f"{path} is not a valid prompt format: {exc}") from None
