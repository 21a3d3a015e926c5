"""Request bodies of the OpenAI-style API: the subset clm serves, and the features it refuses by name.

A field clm cannot honour (``n`` > 1, ``stream``, ``logprobs``, ``echo``, ``best_of`` > 1, penalties) is a 400
that names it, never silently ignored; fields that do not change the answer (``user``, ``metadata``) are
accepted. Unknown fields are ignored, as OpenAI's own API does for forward compatibility.

Every string must be text that can be encoded: JSON can carry a lone surrogate (``"\ud800"``), which no
tokenizer, log or database takes, and a NUL, which PostgreSQL cannot store; both are a 400 here rather than a
500 later. Strings that are repeated in error messages (``model``, ids) have short length limits.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _bad_text(value: Any) -> str | None:
    """Why ``value`` (a string, or lists and dicts of them) is not text clm can encode, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate ({value[exc.start]!r}), which is not Unicode text; send UTF-8"
        return None
    if isinstance(value, dict):
        return next((why for item in value.items() for v in item if (why := _bad_text(v))), None)
    if isinstance(value, list | tuple):
        return next((why for v in value if (why := _bad_text(v))), None)
    return None  # numbers, None, and nested models (which check their own fields)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _encodable(cls, v):
        why = _bad_text(v)
        if why:
            raise ValueError(why)
        return v


def _stops(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if len(stops) > 4:
        raise ValueError("at most 4 stop sequences")
    return [s for s in stops if s]


class _Generation(_Body):
    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    stream: bool | None = None
    logprobs: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    """Free-form tags; ``metadata.task`` names the task, so that feedback on the answer can become training data."""

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        _stops(v)
        return v

    @model_validator(mode="after")
    def _supported(self):
        if (self.n or 1) != 1:
            raise ValueError("n: only n=1 is supported")
        if self.stream:
            raise ValueError("stream: streaming is not supported; send stream=false")
        if self.logprobs not in (None, False, 0):
            raise ValueError("logprobs: log probabilities are not supported")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise ValueError(f"{name}: only 0 is supported")
        return self

    @property
    def stops(self) -> list[str]:
        return _stops(self.stop)

    @property
    def task(self) -> str | None:
        return (self.metadata or {}).get("task")


class CompletionRequest(_Generation):
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self):
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("prompt: send one prompt per request (a list of exactly one string)")
        if self.echo:
            raise ValueError("echo: echoing the prompt is not supported")
        if (self.best_of or 1) != 1:
            raise ValueError("best_of: only best_of=1 is supported")
        if self.suffix:
            raise ValueError("suffix: insertion is not supported")
        return self

    @property
    def text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt


class _TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """The newer name of ``max_tokens`` that current OpenAI clients send."""

    @model_validator(mode="after")
    def _has_user_message(self):
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages: at least one message with role 'user' is required")
        if self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self

    @property
    def text(self) -> str:
        # clm's model answers one request at a time (it was trained on single support requests): the last
        # user message is the request; the rest of the conversation does not reach the model.
        return next(m.text for m in reversed(self.messages) if m.role == "user")


class FeedbackRequest(_Body):
    response_id: str = Field(min_length=1, max_length=64)
    """The ``id`` of a completion or chat completion this server returned."""
    rating: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """0 (bad) .. 1 (good); a thumbs up/down is 1/0."""
    correction: str | None = None
    """The answer that should have been given (at most ``serving.feedback_max_correction_chars``); it waits in
    the review queue and becomes a training example once an operator accepts it."""
    task: str | None = Field(default=None, max_length=100)
    """Task of the request (else the completion's ``metadata.task``); needed for a training example."""
    comment: str | None = None
    """Free text for whoever reads the feedback (at most ``serving.feedback_max_comment_chars``)."""
