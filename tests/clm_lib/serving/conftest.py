"""A temp MLflow registry holding two versions of a tiny clm model (base + LoRA adapter), built once per session.

The adapters are real PEFT adapters on the tiny demo base; version 2's weights are perturbed so the two versions
answer differently. Tests build a config around it with :func:`serving_cfg`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import make_adapter


@pytest.fixture(scope="session")
def serving_registry(tmp_path_factory, tiny_base: Path, _mlflow_template: Path) -> dict:
    """{"tracking_uri": ..., "versions": ["1", "2"], "base": path}: two registered clm versions."""
    import shutil

    import mlflow

    from clm_lib.registry.pyfunc import ClmModel

    root = tmp_path_factory.mktemp("serving-registry")
    shutil.copy(_mlflow_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("serving-tests", artifact_location=str(root / "artifacts"))
    versions = []
    for seed in (0, 1):
        adapter = make_adapter(tiny_base, root / f"adapter-{seed}", seed)
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ClmModel(),
                artifacts={"base": str(tiny_base), "adapter": str(adapter)},
                pip_requirements=["mlflow"],
                registered_model_name="clm-assistant",
            )
        versions.append(str(info.registered_model_version))
    mlflow.MlflowClient(uri, uri).set_registered_model_alias("clm-assistant", "champion", versions[0])
    return {"tracking_uri": uri, "versions": versions, "base": tiny_base}
