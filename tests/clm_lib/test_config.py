import json
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize("how", ["file", "env"])
def test_removed_training_min_new_rows_names_its_replacement(how, tmp_path: Path):
    path = REPO / "include" / "clm.yaml"
    env = {"CLM_HOME": str(tmp_path)}
    if how == "file":
        path = tmp_path / "old.yaml"
        shipped = (REPO / "include" / "clm.yaml").read_text()
        path.write_text(shipped.replace("training:\n", "training:\n  min_new_rows: 200\n"))
    else:
        env["CLM__TRAINING__MIN_NEW_ROWS"] = "200"
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    assert "training.min_new_rows was removed" in str(err.value)
    assert "drift.volume.min_new_rows" in str(err.value)


SECRET_DB = "postgresql+psycopg2://clm:hunter2@db:5432/clm?sslmode=require"
SECRET_MLFLOW = "https://ci:tok3n@mlflow.internal/?access_token=s3cr3t"


def _secret_cfg(tmp_path: Path, db: str = SECRET_DB) -> ClmConfig:
    env = {"CLM_HOME": str(tmp_path), "CLM_DATABASE_URL": db, "MLFLOW_TRACKING_URI": SECRET_MLFLOW}
    return load_config(environ=env)


def test_secret_urls_are_used_but_never_shown(tmp_path: Path):
    cfg = _secret_cfg(tmp_path)
    assert (cfg.database_url, cfg.tracking_uri) == (SECRET_DB, SECRET_MLFLOW)  # what connects gets the real ones
    dumped = json.dumps(cfg.model_dump(mode="json"))  # what config_versions and snapshots store
    for shown in (str(cfg), repr(cfg), dumped, yaml.safe_dump(cfg.model_dump(mode="json")), str(cfg.database.url)):
        assert "hunter2" not in shown and "tok3n" not in shown and "s3cr3t" not in shown
    assert cfg.model_dump(mode="json")["database"]["url"] == "postgresql+psycopg2://clm:***@db:5432/clm?sslmode=require"
    assert cfg.model_dump(mode="json")["registry"]["tracking_uri"] == "https://ci:***@mlflow.internal/?access_token=***"


def test_config_hash_ignores_passwords_but_not_the_database(tmp_path: Path):
    a = _secret_cfg(tmp_path)
    rotated = _secret_cfg(tmp_path, SECRET_DB.replace("hunter2", "correct-horse"))
    moved = _secret_cfg(tmp_path, SECRET_DB.replace("@db:", "@db2:"))
    assert a.config_hash() == rotated.config_hash() != moved.config_hash()
    # Without secrets the dump, hence the hash recorded for lineage, is what it always was.
    plain = load_config(environ={"CLM_HOME": str(tmp_path), "CLM_DATABASE_URL": "postgresql://db/clm"})
    assert plain.model_dump(mode="json")["database"]["url"] == "postgresql://db/clm"


@pytest.mark.parametrize("value", [f'["{SECRET_DB}"]', f"[{SECRET_DB}"], ids=["not-a-string", "not-yaml"])
def test_a_bad_secret_value_is_reported_redacted(value: str, tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(environ={"CLM_HOME": str(tmp_path), "CLM__DATABASE__URL": value})
    assert "DATABASE__URL" in str(err.value).upper().replace(".", "__") and "hunter2" not in str(err.value)


def test_no_config_outside_a_checkout_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from clm_lib.config import NO_CONFIG

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(environ={})
    assert str(err.value) == NO_CONFIG
    assert list(tmp_path.iterdir()) == []
    # Saying where is enough: the home, the config, or both.
    assert load_config(environ={"CLM_HOME": str(tmp_path / "h")}).home == tmp_path / "h"
    assert load_config(environ={"CLM_CONFIG": str(REPO / "include" / "clm.yaml")}).home == tmp_path / ".clm"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CLM__INGEST__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1"}, "ingest.kafka.bootstrap_servers"),
        ({"CLM__INGEST__KAFKA__TOPIC": "no spaces"}, "ingest.kafka.topic"),
        ({"CLM__INGEST__KAFKA__GROUP_ID": "' '"}, "ingest.kafka.group_id"),
        ({"CLM__INGEST__KAFKA__POLL_WINDOW_S": "0"}, "ingest.kafka.poll_window_s"),
        ({"CLM__INGEST__KAFKA__MAX_RECORDS": "0"}, "ingest.kafka.max_records"),
        ({"CLM__INGEST__KAFKA__MAX_MESSAGE_BYTES": "-5"}, "ingest.kafka.max_message_bytes"),
        ({"CLM__INGEST__KAFKA__ENABLED": "maybe"}, "ingest.kafka.enabled"),
    ],
)
def test_kafka_settings_are_checked_and_off_by_default(env, field, tmp_path: Path):
    kafka = load_config(environ={"CLM_HOME": str(tmp_path)}).ingest.kafka
    assert (kafka.enabled, kafka.bootstrap_servers) == (False, "127.0.0.1:19092")
    with pytest.raises(ConfigError) as err:
        load_config(environ={"CLM_HOME": str(tmp_path), **env})
    assert field in str(err.value)


PROFILES = sorted((REPO / "include" / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("profile", [p.stem for p in PROFILES])
def test_every_shipped_profile_loads_over_every_shipped_config(profile: str, tmp_path: Path):
    for path in SHIPPED:
        plain = load_config(path, environ={"CLM_HOME": str(tmp_path)})
        cfg = load_config(path, environ={"CLM_HOME": str(tmp_path), "CLM_PROFILE": profile})
        assert cfg.home == tmp_path and cfg.data.tasks == plain.data.tasks  # where things live changes, not what


def test_the_production_profile_moves_the_stores_and_the_executor_only(tmp_path: Path):
    plain = load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path)})
    cfg = load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path), "CLM_PROFILE": "production"})
    assert (cfg.server.executor, cfg.lake_uri, cfg.landing_uri) == ("celery", "s3://clm/lake", "s3://clm/landing")
    assert cfg.database_url.startswith("postgresql") and cfg.tracking_uri.startswith("postgresql")
    assert cfg.registry.artifacts_uri == "s3://clm/mlartifacts"
    changed = {k for k, v in cfg.model_dump(mode="json").items() if plain.model_dump(mode="json")[k] != v}
    assert changed == {"paths", "database", "registry", "server"}
    # The environment still wins over the profile, field by field.
    env = {"CLM_HOME": str(tmp_path), "CLM_PROFILE": "production", "CLM_DATA_URI": "s3://other/lake",
           "CLM__SERVER__CELERY__CONCURRENCY": "4"}  # fmt: skip
    cfg = load_config(REPO / "include" / "clm.yaml", environ=env)
    assert (cfg.lake_uri, cfg.server.celery.concurrency, cfg.server.executor) == ("s3://other/lake", 4, "celery")


def test_the_home_remembers_its_profile_and_the_environment_overrides_it(tmp_path: Path):
    (tmp_path / "profile").write_text("production\n")
    clm_yaml = REPO / "include" / "clm.yaml"
    assert load_config(clm_yaml, environ={"CLM_HOME": str(tmp_path)}).server.executor == "celery"
    other = tmp_path / "mine.yaml"
    other.write_text("server: {executor: local, parallelism: 2}\n")
    cfg = load_config(clm_yaml, environ={"CLM_HOME": str(tmp_path), "CLM_PROFILE": str(other)})
    assert (cfg.server.executor, cfg.server.parallelism, cfg.lake_uri) == ("local", 2, str(tmp_path / "lake"))


@pytest.mark.parametrize(
    ("profile", "text", "message"),
    [
        ("staging", None, r"unknown clm profile 'staging': one of .*production"),
        ("p.yaml", "server: {executr: celery}", r"with profile .*p.yaml:\n  server.executr: Extra inputs"),
        ("p.yaml", "server: {executor: kubernetes}", r"server.executor: Input should be 'local' or 'celery'"),
        ("p.yaml", "paths: {home: /elsewhere}", r"paths.home cannot be set by a profile"),
        ("p.yaml", "- a list", r"must be a mapping of sections"),
        ("missing.yaml", None, r"cannot read clm profile"),
    ],
)
def test_a_bad_profile_is_refused_with_what_is_wrong(profile, text, message, tmp_path: Path):
    if text is not None:
        (tmp_path / profile).write_text(text)
    path = str(tmp_path / profile) if profile.endswith(".yaml") else profile
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": str(tmp_path), "CLM_PROFILE": path})
