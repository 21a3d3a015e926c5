"""The MLflow pyfunc wrapper of a clm model: base model + LoRA adapter, answering prompts.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(["prompt", ...])`` returns the
greedy answers (:func:`clm_lib.modeling.generate.generate`, in the prompt format saved with the adapter,
exactly as evaluation and serving answer). The base model travels inside the artifact (the demo's is a
few MB) unless the registration was told to reference a shared base path, so a version stays loadable on
its own.

A version with per-task adapters answers each prompt with its task's adapter: the input may name the task
(a ``task`` column, or ``{"prompt": [...], "task": [...]}``), otherwise the version's learned router picks it.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class ClmModel(mlflow.pyfunc.PythonModel):
    """Greedy completion of prompts with the base model and this version's adapter."""

    def load_context(self, context: Any) -> None:
        from clm_lib.modeling.load import load_model

        self.model, self.tokenizer = load_model(context.artifacts["base"], context.artifacts["adapter"])
        self.max_new_tokens = int((context.model_config or {}).get("max_new_tokens", 32))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> list[str]:
        from clm_lib.modeling.generate import generate

        prompts, tasks = _prompts(model_input)
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new, tasks=tasks)


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) or value is None else list(value)


def _tasks(values: Any, n: int) -> list[str | None] | None:
    """Task ids as given (blank or missing: ``None``, routed by the router), or ``None`` when none were given."""
    if values is None:
        return None
    tasks = [str(v) if isinstance(v, str) and v.strip() else None for v in _listed(values)]
    if len(tasks) != n:
        raise ValueError(f"{n} prompts but {len(tasks)} task ids")
    return tasks


def _prompts(model_input: Any) -> tuple[list[str], list[str | None] | None]:
    """(prompts, task ids or ``None``) from a string, a list, a dict or a pandas DataFrame."""
    if isinstance(model_input, str):
        return [model_input], None
    if hasattr(model_input, "columns"):  # pandas DataFrame
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        prompts = [str(v) for v in model_input[column].tolist()]
        tasks = model_input["task"].tolist() if "task" in model_input.columns else None
        return prompts, _tasks(tasks, len(prompts))
    if isinstance(model_input, dict):
        prompts = [str(v) for v in _listed(model_input.get("prompt", []))]
        return prompts, _tasks(model_input.get("task"), len(prompts))
    return [str(v) for v in model_input], None
