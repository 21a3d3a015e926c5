"""Which configuration fields may change at run time (stored as revisions), and why the others may not.

A revision (:mod:`clm_lib.config_store`) holds only run-time-mutable fields, addressed by dotted path
(``deploy.bake_seconds``). Everything else keeps coming from the file and the environment: paths, URLs,
ports and anything a process reads once at start-up or that would break the lineage of trained adapters.
The rules are prefixes; the longest matching prefix decides. Secret fields are never mutable, whatever the rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Secret

_RULES: dict[str, str | None] = {
    # None: mutable. A string: read-only, and the reason shown next to the field.
    "paths": "where clm keeps its state: every process opens these at start-up",
    "database": "clm's own database, a secret: set it in the environment or the clm_default connection",
    "registry": "the MLflow store (a secret) and model name: renaming would orphan registered versions and aliases",
    "server": "ports, executor and workers `clm up` starts with: change them in the file or profile, and restart",
    "serving": "the slot and router processes read it when they start: change it in the file and restart them",
    "model": "the base model every adapter is trained on: another one makes the trained adapters unusable",
    "data": "how landing files are read and validated: change it in the file, reviewed with the validation suite",
    "data.tasks": None,
    "data.min_prompt_chars": None,
    "data.max_prompt_chars": None,
    "data.min_response_chars": None,
    "data.max_response_chars": None,
    "data.max_attempts": None,
    "data.eval_fraction": "decides which records are held out: evaluations before and after would not compare",
    "training": None,
    "training.lora": "the adapter's shape: the next run continues the parent adapter, which has this shape",
    "training.adapters": "the adapter layout of the lineage: the parent adapters are stored in this layout",
    "training.deepspeed": "a path on the worker host",
    "training.device": "depends on the worker host's hardware",
    "training.threads": "depends on the worker host's cores",
    "training.placement": "read when the training DAG file is parsed: change it in the file or environment",
    "training.kubernetes": "the trainer pod is built when the training DAG file is parsed: change it in the file",
    "evaluation": None,
    "gate": None,
    "drift": None,
    "drift.embedding_mmd.model_path": "a path on the worker host",
    "drift.embedding_mmd.threads": "depends on the worker host's cores",
    "deploy": None,
    "deploy.require_approval": "the approval policy itself: one operator must not be able to switch it off",
    "deploy.four_eyes": "the approval policy itself: one operator must not be able to switch it off",
    "deploy.approvers": "the approval policy itself: one operator must not be able to choose the approvers",
    "lake": None,  # maintenance only: a shorter retention still keeps every version a model or deployment needs
    "alerts": "alert channels and their addresses (a webhook URL may carry a token): change them in the file",
}
DEFAULT_REASON = "read at start-up"
SECRET_REASON = "a secret: it stays in environment variables or Airflow connections, never stored or shown"

SECTIONS: dict[str, tuple[str, list[str]]] = {
    # The screen's forms: a title and the dotted prefixes each one edits (the longest matching prefix wins).
    "tasks": ("Tasks", ["data.tasks"]),
    "gate": ("Gate budget", ["gate", "evaluation"]),
    "deploy": ("Deploy strategy and canary steps", ["deploy"]),
    "safety": ("Safety rules", ["deploy.rules", "deploy.guard", "deploy.reconciler"]),
    "training": ("Training: replay, EWC, distillation, freezing", ["training"]),
    "thresholds": ("Data thresholds and drift", ["data", "drift"]),
    "lake": ("Lake maintenance", ["lake"]),
    "other": ("Fixed at start-up", []),
}


def read_only_reason(path: str) -> str | None:
    """None when ``path`` may change at run time, else why not."""
    best = ""
    for prefix in _RULES:
        if (path == prefix or path.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return _RULES[best] if best else DEFAULT_REASON


def section_of(path: str) -> str:
    """The key of the screen section (:data:`SECTIONS`) that shows ``path``."""
    best, best_len = "other", -1
    for key, (_, prefixes) in SECTIONS.items():
        for prefix in prefixes:
            if (path == prefix or path.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = key, len(prefix)
    return best


def leaves(cfg: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every field of ``cfg`` that is not a section, by dotted path, as JSON (secrets redacted)."""
    out: dict[str, Any] = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(leaves(value, path + "."))
        else:
            out[path] = cfg.model_dump(mode="json", include={name})[name]
    return out


def secret_paths(cfg: BaseModel, prefix: str = "") -> set[str]:
    """Dotted paths of the fields holding a secret (set or not, judged by the field's type)."""
    out: set[str] = set()
    for name, info in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out |= secret_paths(value, path + ".")
        elif isinstance(value, Secret) or "Secret" in str(info.annotation):
            out.add(path)
    return out


def field_reasons(cfg: BaseModel) -> dict[str, str | None]:
    """Every leaf path of ``cfg``: None if mutable, else why it is read-only."""
    secrets = secret_paths(cfg)
    return {p: SECRET_REASON if p in secrets else read_only_reason(p) for p in leaves(cfg)}


def mutable_content(cfg: BaseModel) -> dict[str, Any]:
    """The run-time-mutable part of ``cfg``: ``{dotted path: JSON value}``, what a revision stores."""
    reasons = field_reasons(cfg)
    return {p: v for p, v in leaves(cfg).items() if reasons[p] is None}


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in a nested dict (a model's ``model_dump``), creating sections on the way."""
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def docs(cfg: BaseModel, prefix: str = "") -> dict[str, str]:
    """Each leaf's documentation: the docstring under its field, as the config classes write them."""
    try:  # pydantic's own reader of attribute docstrings; private, so a newer pydantic may lack it
        from pydantic._internal._docs_extraction import extract_docstrings_from_cls
    except ImportError:  # pragma: no cover
        return {}
    out: dict[str, str] = {}
    own = extract_docstrings_from_cls(type(cfg), use_inspect=True)
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            out.update(docs(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = " ".join(own.get(name, "").split())
    return out
