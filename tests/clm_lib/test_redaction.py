"""Secrets leave their stores only to connect: never into a file, a ConfigMap or a message (issue #10, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clm_lib.config import ClmConfig, load_config
from clm_lib.errors import ServingError
from clm_lib.redaction import redact_text, redact_url

REPO = Path(__file__).resolve().parents[2]
DB = "postgresql+psycopg2://clm:hunter2@db:5432/clm"
MLFLOW = "https://ci:tok3n@mlflow.internal"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (DB, "postgresql+psycopg2://clm:***@db:5432/clm"),
        ("postgresql://db/clm?sslmode=require&password=pw", "postgresql://db/clm?password=***&sslmode=require"),
        ("https://mlflow.internal/?access_token=abc", "https://mlflow.internal/?access_token=***"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////var/clm/clm.db", "sqlite:////var/clm/clm.db"),
        ("databricks", "databricks"),
        ("s3://bucket/x?X-Amz-Signature=abc", "s3://bucket/x?X-Amz-Signature=***"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_finds_urls_inside_messages():
    message = f"API request to {MLFLOW}/api/2.0/x?token=abc&page=2 failed; retrying {DB}"
    assert redact_text(message) == (
        "API request to https://ci:***@mlflow.internal/api/2.0/x?token=***&page=2 failed; "
        "retrying postgresql+psycopg2://clm:***@db:5432/clm"
    )


def test_a_driver_error_on_a_screen_is_redacted():
    from clm_lib.reporting.stores import first_line

    assert first_line(RuntimeError(f"cannot reach {MLFLOW}\nmore")) == "cannot reach https://ci:***@mlflow.internal"


@pytest.fixture
def secret_cfg(tmp_path: Path) -> ClmConfig:
    env = {"CLM_HOME": str(tmp_path / "home"), "CLM_DATABASE_URL": DB, "MLFLOW_TRACKING_URI": MLFLOW}
    return load_config(REPO / "include" / "clm.yaml", environ=env)


def test_the_local_slots_snapshot_holds_no_secret_yet_the_slots_get_them(secret_cfg):
    from clm_lib.serving.backends.local import LocalBackend

    env = LocalBackend(secret_cfg)._child_env()
    snapshot = Path(env["CLM_CONFIG"])
    assert "hunter2" not in snapshot.read_text() and "tok3n" not in snapshot.read_text()
    # A slot loads the snapshot with its environment and connects with the real URLs.
    child = load_config(environ=env)
    assert (child.database_url, child.tracking_uri) == (DB, MLFLOW)


def test_the_configmap_holds_no_secret(secret_cfg):
    from clm_lib.serving.backends import manifests

    body, _sha = manifests.config_map(secret_cfg)
    text = yaml.safe_dump(body)
    assert "hunter2" not in text and "tok3n" not in text
    settings = yaml.safe_load(body["data"]["clm.yaml"])
    assert settings["database"]["url"] == "postgresql+psycopg2://clm:***@db:5432/clm"
    # The deployment takes the real values from the Secret named in the config.
    deployment = manifests.deployment(secret_cfg, "blue", "3", _sha)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": secret_cfg.serving.kubernetes.env_secret}}]
    assert "hunter2" not in yaml.safe_dump(deployment)


def test_a_secret_with_no_kubernetes_secret_to_carry_it_is_refused(secret_cfg):
    from clm_lib.serving.backends import manifests

    secret_cfg.serving.kubernetes.env_secret = None
    with pytest.raises(ServingError, match=r"database\.url and registry\.tracking_uri hold a password"):
        manifests.config_map(secret_cfg)
