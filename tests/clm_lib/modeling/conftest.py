"""The tiny demo base model (``include/tiny.yaml``), built once per test session and shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from clm_lib.config import load_config

TINY = Path(__file__).resolve().parents[3] / "include" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    # One folder for the whole session, whichever test directory asks first.
    from clm_lib.modeling.build import ensure_base_model

    root = tmp_path_factory.getbasetemp()
    cfg = load_config(TINY, environ={"CLM_HOME": str(root), "CLM__MODEL__BASE_PATH": str(root / "tiny-base")})
    return ensure_base_model(cfg)


@pytest.fixture
def tiny_cfg(tmp_path: Path, tiny_base: Path):
    """tiny.yaml with its own home and the shared base model."""
    return load_config(TINY, environ={"CLM_HOME": str(tmp_path / "home"), "CLM__MODEL__BASE_PATH": str(tiny_base)})
