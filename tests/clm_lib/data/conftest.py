"""Fixtures for the data tests: a clm home with a migrated database, and small hand-written records.

Helpers are fixtures because tests run with ``--import-mode=importlib`` (no test folder on sys.path).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clm_lib.config import REPO_ROOT, ClmConfig, load_config
from clm_lib.db import upgrade


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., ClmConfig]:
    """``make_cfg(**data)``: the shipped config under tmp_path, ``data`` fields overridden, DB migrated."""

    def make(**data: Any) -> ClmConfig:
        environ = {"CLM_HOME": str(tmp_path / "home")}
        environ.update({f"CLM__DATA__{k.upper()}": json.dumps(v) for k, v in data.items()})
        cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ)
        cfg.landing_dir.mkdir(parents=True, exist_ok=True)
        upgrade(cfg.database_url)
        return cfg

    return make


@pytest.fixture
def lake_cfg(make_cfg) -> ClmConfig:
    """Shipped config (tasks routers, billing, ...; prompts 8-2000 chars, responses 2-400) in tmp_path."""
    return make_cfg()


def _record(i: int, task: str = "routers", **extra: Any) -> dict[str, Any]:
    return {
        "task": task,
        "prompt": f"My router {i} drops the connection every evening, what can I do?",
        "response": f"Update the firmware and move it away from the microwave (ticket {i}).",
        **extra,
    }


@pytest.fixture
def record() -> Callable[..., dict[str, Any]]:
    """``record(i, task="routers", **extra)``: a valid support-ticket record, distinct for each ``i``."""
    return _record


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    with path.open("wb") as fh:
        for line in lines:
            if isinstance(line, bytes):
                fh.write(line + b"\n")
            elif isinstance(line, str):
                fh.write(line.encode() + b"\n")
            else:
                fh.write(json.dumps(line).encode() + b"\n")
    return path


@pytest.fixture
def write_jsonl() -> Callable[[Path, list[Any]], Path]:
    """``write_jsonl(path, lines)``: objects are written as JSON, ``str``/``bytes`` lines verbatim."""
    return _write_jsonl
