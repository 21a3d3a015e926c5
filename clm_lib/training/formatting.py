"""The one prompt template, shared by training, evaluation and serving.

There is no task id in the prompt: the request text itself names the product, as a live request would.
The response is tokenized separately with a leading space, so the prompt/response token boundary is the same
when training, scoring and generating (BPE would otherwise merge across it differently each time).
"""

from __future__ import annotations

PROMPT_TEMPLATE = "Support request:\n{prompt}\nTriage:"


def format_prompt(prompt: str) -> str:
    """The model input for a request, up to where the answer starts."""
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())


def format_response(response: str) -> str:
    """The answer as the model is trained to write it, right after :func:`format_prompt`."""
    return " " + response.strip()


def parse_response(generated: str) -> str:
    """Inverse of :func:`format_response` for generated text."""
    return generated.strip()
