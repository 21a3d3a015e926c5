"""The MLflow pyfunc wrapper of a clm model: base model + LoRA adapter, answering prompts.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(["prompt", ...])`` returns the
greedy answers. The base model travels inside the artifact (the demo's is a few MB) unless the
registration was told to reference a shared base path, so a version stays loadable on its own.
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
        from clm_lib.evaluation.metrics import generate

        prompts = _prompts(model_input)
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new)


def _prompts(model_input: Any) -> list[str]:
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # pandas DataFrame
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column].tolist()]
    if isinstance(model_input, dict):
        value = model_input.get("prompt", [])
        return [value] if isinstance(value, str) else [str(v) for v in value]
    return [str(v) for v in model_input]
