"""A registered model version, loaded for serving: the base model and the version's LoRA adapter.

The version's files come from MLflow (``models:/<name>/<version>``: the pyfunc artifacts ``base`` and ``adapter``
that :func:`clm_lib.registry.mlflow_registry.register_candidate` logs, found where its MLmodel file says) into a
cache under ``$CLM_HOME/serving/models``; a version never changes, so a slot restarted on it loads from disk.

Answers come from :func:`clm_lib.modeling.generate.complete`, the generation evaluation is checked against, in the
prompt format the version was trained with, so at temperature 0 a slot answers exactly what the gate scored. A
version with per-task adapters answers with the adapter of the request's ``metadata.task`` when it names one, else
with the one its learned router picks.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clm_lib.config import ClmConfig
from clm_lib.errors import ServingError
from clm_lib.modeling.generate import Completion, complete, context_length
from clm_lib.redaction import redact_url

__all__ = ["Completion", "ServedModel", "fetch_version", "load_served_model", "resolve_version"]

log = logging.getLogger(__name__)


def resolve_version(cfg: ClmConfig, version: str | None = None, alias: str | None = None) -> str:
    """The version number to serve: ``version`` itself, or the one ``alias`` points at now."""
    from clm_lib.registry.mlflow_registry import alias_version

    if (version is None) == (alias is None):
        raise ServingError("name exactly one of a version or an alias")
    if version is not None:
        if not str(version).isdigit():
            raise ServingError(f"a model version is a number, got {version!r} (use an alias for names)")
        return str(version)
    found = alias_version(cfg, alias)
    if found is None:
        raise ServingError(
            f"{cfg.registry.model_name}@{alias} does not exist in the registry at {redact_url(cfg.tracking_uri)}"
        )
    return found


def _clm_artifacts(folder: Path, name: str, version: str) -> tuple[Path, Path]:
    """(base, adapter) folders of a downloaded model, as its MLmodel file maps them."""
    import yaml

    try:
        flavors = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))["flavors"]
        artifacts = flavors["python_function"]["artifacts"]
        base, adapter = (folder / artifacts[key]["path"] for key in ("base", "adapter"))
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        raise ServingError(
            f"{name} version {version} is not a clm model (its MLmodel names no base and adapter artifacts)"
        ) from None
    if not (base.is_dir() and adapter.is_dir()):
        raise ServingError(f"{name} version {version} is incomplete: {base} or {adapter} is missing")
    return base, adapter


def fetch_version(cfg: ClmConfig, version: str) -> tuple[Path, Path]:
    """Local (base, adapter) folders of ``version``, downloaded from MLflow once."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from clm_lib.registry.mlflow_registry import client

    name = cfg.registry.model_name
    target = cfg.home / "serving" / "models" / name / version
    if (target / "MLmodel").exists():
        return _clm_artifacts(target, name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    client(cfg)
    # Downloaded beside the target and renamed into place: two slots loading one version at once, or a crash
    # half-way, never leave a partial folder that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        try:
            found = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp)))
        except MlflowException as exc:
            raise ServingError(
                f"cannot fetch {name} version {version} from {redact_url(cfg.tracking_uri)}: {exc.message}"
            ) from None
        _clm_artifacts(found, name, version)
        try:
            os.replace(found, target)
        except OSError:
            if not (target / "MLmodel").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _clm_artifacts(target, name, version)


class ServedModel:
    """One model version answering prompts. Not thread-safe: the server calls it from one worker thread."""

    def __init__(self, model, tokenizer, *, name: str, version: str):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        self.context_length = context_length(model)

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        task: str | None = None,
    ) -> Completion:
        """Answer ``prompt`` with at most ``max_tokens`` new tokens; ``temperature`` 0 is greedy decoding.

        ``task`` picks the task's adapter of a version with per-task adapters (else its router picks one).
        """
        (done,) = complete(
            self.model,
            self.tokenizer,
            [prompt],
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            tasks=[task],
        )
        return done


def load_served_model(cfg: ClmConfig, version: str) -> ServedModel:
    """Fetch ``version`` and load it on ``serving.device`` with ``serving.threads`` CPU threads."""
    import torch

    from clm_lib.errors import TrainingError
    from clm_lib.modeling.load import load_model, resolve_device

    torch.set_num_threads(cfg.serving.threads)
    base, adapter = fetch_version(cfg, version)
    try:
        model, tokenizer = load_model(base, adapter, resolve_device(cfg.serving.device))
    except TrainingError as exc:
        raise ServingError(f"cannot load {cfg.registry.model_name} version {version}: {exc}") from None
    log.info("loaded %s version %s from %s", cfg.registry.model_name, version, adapter.parent)
    return ServedModel(model, tokenizer, name=cfg.registry.model_name, version=version)
