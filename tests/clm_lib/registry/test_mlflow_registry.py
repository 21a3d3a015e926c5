"""What a registered version logs to MLflow about its evaluation and its lineage."""

from __future__ import annotations

import json

from clm_lib.config import PromptConfig
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.modeling.prompt import save_prompt_config
from clm_lib.registry.mlflow_registry import _metrics, lineage_tags


def test_every_task_metric_is_logged_as_task_dot_metric():
    run = TrainingRun(id="r", metrics={"loss": 0.5, "note": "text"})
    evaluation = Evaluation(
        scores={"billing": 44.4, "routers": 90.0},
        metrics={"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 44.4}}},
        average_accuracy=67.2,
        backward_transfer=None,
    )
    assert _metrics(run, evaluation) == {
        "accuracy.billing": 44.4,  # the primary metric, as before
        "accuracy.routers": 90.0,
        "billing.exact_match": 80.0,
        "billing.macro_f1": 44.4,
        "average_accuracy": 67.2,
        "train.loss": 0.5,
    }


def test_the_lineage_names_the_prompt_format_the_adapter_was_trained_with(tmp_path):
    run = TrainingRun(id="r", base_model="b", config_hash="h", tasks=["routers"], trigger={}, output_dir=str(tmp_path))
    assert "clm.prompt" not in lineage_tags(run)  # no adapter here: nothing to say, rather than a guess
    (tmp_path / "adapter").mkdir()
    # An adapter from before formats were saved was trained with the demo template.
    assert json.loads(lineage_tags(run)["clm.prompt"]) == {"kind": "template", "template": PromptConfig().template}
    save_prompt_config(PromptConfig(kind="chat", system="Triage."), tmp_path / "adapter")
    assert json.loads(lineage_tags(run)["clm.prompt"]) == {"kind": "chat", "system": "Triage."}


def test_the_experiment_keeps_its_artifacts_where_the_config_says_even_without_a_server(cfg, mlflow_uri, tmp_path):
    # A client on the store itself (no tracking server) would otherwise create it with ./mlruns of its own cwd.
    from clm_lib.registry import mlflow_registry

    cfg.registry.tracking_uri = mlflow_uri
    cfg.registry.artifacts_uri = str(tmp_path / "artifacts")
    mlflow_registry.client(cfg)
    experiment = mlflow_registry._experiment(cfg)
    assert experiment.artifact_location.endswith(f"{tmp_path / 'artifacts'}/{cfg.registry.experiment}")
    assert mlflow_registry._experiment(cfg).experiment_id == experiment.experiment_id  # found, not made again
