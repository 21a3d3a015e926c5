from pathlib import Path

import pytest

from clm_lib.config import ClmConfig, load_config
from clm_lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "include").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert REPO / "include" / "clm.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path: Path, tmp_path: Path):
    cfg = load_config(path, environ={"CLM_HOME": str(tmp_path)})
    assert isinstance(cfg, ClmConfig)
    assert cfg.home == tmp_path
    assert cfg.data.tasks


def test_well_known_environment_variables_win(tmp_path: Path):
    cfg = load_config(
        environ={
            "CLM_HOME": str(tmp_path),
            "CLM_DATABASE_URL": "postgresql://db/clm",
            "CLM_DATA_URI": "s3://bucket/lake",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        }
    )
    assert (cfg.database_url, cfg.lake_uri, cfg.tracking_uri) == (
        "postgresql://db/clm",
        "s3://bucket/lake",
        "http://127.0.0.1:5000",
    )


def test_defaults_live_under_home(tmp_path: Path):
    cfg = load_config(environ={"CLM_HOME": str(tmp_path)})
    assert cfg.database_url == f"sqlite:///{tmp_path}/clm.db"
    assert cfg.lake_uri == str(tmp_path / "lake")
    assert cfg.landing_dir == tmp_path / "landing"


def test_nested_override_is_typed(tmp_path: Path):
    cfg = load_config(
        environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__LORA__R": "4", "CLM__TRAINING__REPLAY__ENABLED": "false"}
    )
    assert cfg.training.lora.r == 4
    assert cfg.training.replay.enabled is False


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CLM__TRAINING__LEARNING_RATE": "-1"}, "training.learning_rate"),
        ({"CLM__DATA__EVAL_FRACTION": "0.9"}, "data.eval_fraction"),
        ({"CLM__GATE__MAX_TASK_DROP": "lots"}, "gate.max_task_drop"),
        ({"CLM__TRAINING__OPTIMISER": "sgd"}, "training.optimiser"),
        ({"CLM__SERVER__HOST": "0.0.0.0"}, "server.host"),
    ],
)
def test_a_bad_value_names_the_field(env, field, tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(environ={"CLM_HOME": str(tmp_path), **env})
    assert field in str(err.value)


def test_bad_files_say_what_is_wrong(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    no_tasks = tmp_path / "empty.yaml"
    no_tasks.write_text("data: {tasks: []}")
    with pytest.raises(ConfigError, match=r"data\.tasks"):
        load_config(no_tasks)
    inverted = tmp_path / "inverted.yaml"
    inverted.write_text("data: {tasks: [a], min_prompt_chars: 50, max_prompt_chars: 10}")
    with pytest.raises(ConfigError, match="min_prompt_chars"):
        load_config(inverted)


def test_config_hash_tracks_settings(tmp_path: Path):
    a = load_config(environ={"CLM_HOME": str(tmp_path)})
    b = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__TRAINING__MAX_STEPS": "7"})
    assert a.config_hash() == load_config(environ={"CLM_HOME": str(tmp_path)}).config_hash()
    assert a.config_hash() != b.config_hash()
