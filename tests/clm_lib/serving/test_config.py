"""The ``serving`` config section: defaults, overrides, and what it refuses."""

from __future__ import annotations

import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.errors import ConfigError


def test_shipped_configs_have_a_valid_serving_section(tmp_path):
    for name in ("clm.yaml", "tiny.yaml"):
        cfg = load_config(REPO_ROOT / "include" / name, environ={"CLM_HOME": str(tmp_path)})
        assert cfg.serving.backend == "local" and cfg.serving.host == "127.0.0.1"
        assert cfg.serving.slot_port("green") == cfg.serving.green_port


def test_overrides_and_refusals(tmp_path):
    env = {"CLM_HOME": str(tmp_path), "CLM__SERVING__KUBERNETES__REPLICAS": "6"}
    assert load_config(environ=env).serving.kubernetes.replicas == 6
    with pytest.raises(ConfigError, match="must differ"):
        load_config(environ=env | {"CLM__SERVING__BLUE_PORT": "8102"})
    with pytest.raises(ConfigError, match="default_max_tokens must not exceed"):
        load_config(environ=env | {"CLM__SERVING__MAX_TOKENS_LIMIT": "16"})
    with pytest.raises(ConfigError, match=r"serving\.kubernetes\.name"):
        load_config(environ=env | {"CLM__SERVING__KUBERNETES__NAME": "Not_A_DNS_Name"})
    with pytest.raises(ConfigError, match=r"serving\.typo"):
        load_config(environ=env | {"CLM__SERVING__TYPO": "1"})


def test_an_unknown_backend_is_named(tmp_path):
    from clm_lib.serving.backends import get_backend

    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__SERVING__BACKEND": "nomad"})
    with pytest.raises(ConfigError, match=r"unknown backend .nomad.*kubernetes, local"):
        get_backend(cfg)


def test_the_local_backend_listens_on_loopback_only(tmp_path):
    from clm_lib.errors import ServingError
    from clm_lib.serving.backends import get_backend

    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__SERVING__HOST": "0.0.0.0"})
    with pytest.raises(ServingError, match="loopback only"):
        get_backend(cfg)


@pytest.mark.parametrize(
    ("setting", "host", "required"),
    [
        (None, "127.0.0.1", False),
        (None, "localhost", False),
        (None, "::1", False),
        (None, "127.0.0.2", False),
        (None, "0.0.0.0", True),
        (None, "10.1.2.3", True),
        (None, "slots.internal", True),
        (True, "127.0.0.1", True),
        (False, "0.0.0.0", False),
    ],
)
def test_api_keys_are_required_unless_bound_to_loopback(tmp_path, setting, host, required):
    env = {"CLM_HOME": str(tmp_path)}
    if setting is not None:
        env["CLM__SERVING__REQUIRE_API_KEY"] = str(setting).lower()
    serving = load_config(environ=env).serving
    assert serving.require_api_key is setting
    assert serving.api_key_required(host) is required
