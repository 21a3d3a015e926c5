"""Fixtures for the training commands' tests."""

from __future__ import annotations

import pytest

from clm_lib.config import REPO_ROOT

TINY = REPO_ROOT / "include" / "tiny.yaml"


@pytest.fixture
def tiny_clm_env(tmp_path, tiny_base, monkeypatch):
    """``tiny_clm_env(**overrides) -> env``: ``include/tiny.yaml`` with a home of this test's own and the shared tiny
    base, plus ``overrides``; set in ``os.environ`` for the test (code that loads the config itself sees it) and
    returned for ``CliRunner`` (which restores what the command changes)."""

    def make(**overrides: str) -> dict[str, str]:
        values = {"CLM_CONFIG": str(TINY), "CLM_HOME": str(tmp_path / "home"),
                  "CLM__MODEL__BASE_PATH": str(tiny_base), **overrides}  # fmt: skip
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        return values

    return make
