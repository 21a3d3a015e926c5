"""Training on Kubernetes (``training.placement: kubernetes``), checked without a cluster.

No test here talks to a Kubernetes API server, and none ran against a real cluster: the pod is the one
``KubernetesPodOperator.build_pod_request_obj`` would submit (a dry run: no kube config needed), the manifests in
``include/k8s`` are checked by deserializing them into the Kubernetes client's API models, and the pod's side,
``clm train --spec``, runs for real as local subprocesses on the tiny model under the DeepSpeed launcher (the pod's
command, on CPU), with the exchange location on moto's S3 server on loopback (a separate process, see
``s3_endpoint``): killed mid-run, resumed from the checkpoint in the bucket, and ending with the weights of a run
that was never interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
import yaml

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.errors import ConfigError

CLM_YAML = REPO_ROOT / "include" / "clm.yaml"
TINY = REPO_ROOT / "include" / "tiny.yaml"
IMAGE = "registry.example.com/clm:1.4.2"
SECRET_VALUE = "s3cr3t-never-in-the-spec"


def _k8s_env(**extra: str) -> dict[str, str]:
    return {
        "CLM_HOME": "/nonexistent-home",
        "CLM__TRAINING__PLACEMENT": "kubernetes",
        "CLM__TRAINING__KUBERNETES__IMAGE": IMAGE,
        "CLM__TRAINING__KUBERNETES__IMAGE_PULL_POLICY": "Always",
        "CLM__TRAINING__KUBERNETES__GPUS": "2",
        "CLM__TRAINING__KUBERNETES__SECRETS": "[clm-object-store, {name: clm-db, key: url, env: CLM_DATABASE_URL}]",
        "CLM__TRAINING__KUBERNETES__TOLERATIONS": "[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]",
        "CLM__TRAINING__KUBERNETES__NODE_SELECTOR": "{nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}",
        "CLM__TRAINING__KUBERNETES__SHM_SIZE": "16Gi",
        **extra,
    }


def _pod(environ: dict[str, str]):
    from airflow.sdk import DAG

    from clm_lib.airflow.operators.training_pod import trainer_pod

    training = load_config(CLM_YAML, environ=environ).training
    with DAG("t", schedule=None, start_date=datetime(2026, 1, 1)):
        op = trainer_pod(training, spec_uri="s3://clm/_training/run-1/spec.json")
    return op, op.build_pod_request_obj(None, dry_run=True)


def test_the_pod_has_what_the_config_says():
    op, pod = _pod(_k8s_env())
    assert op.deferrable and op.get_logs
    [c] = pod.spec.containers
    assert c.name == "base" and c.image == IMAGE and c.image_pull_policy == "Always"
    assert c.command == ["clm"] and c.args == ["train", "--spec", "s3://clm/_training/run-1/spec.json"]
    assert c.resources.limits["nvidia.com/gpu"] == "2"
    assert c.resources.requests == {"cpu": "2", "memory": "16Gi"} and c.resources.limits["memory"] == "16Gi"
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod.metadata.namespace == "clm" and pod.spec.restart_policy == "Never"
    assert pod.spec.active_deadline_seconds == 6 * 3600
    # Secrets: referenced by name, the kubelet fills them in.
    assert [e.secret_ref.name for e in c.env_from if e.secret_ref] == ["clm-object-store"]
    [db] = [e for e in c.env if e.name == "CLM_DATABASE_URL"]
    assert db.value is None and (db.value_from.secret_key_ref.name, db.value_from.secret_key_ref.key) == (
        "clm-db",
        "url",
    )
    # /dev/shm: memory-backed, as large as asked.
    [shm] = [v for v in pod.spec.volumes if v.name == "dshm"]
    assert (shm.empty_dir.medium, shm.empty_dir.size_limit) == ("Memory", "16Gi")
    assert any(m.name == "dshm" and m.mount_path == "/dev/shm" for m in c.volume_mounts)
    # From the template: non-root, read-only root, nothing to escalate to.
    assert pod.spec.security_context.run_as_non_root is True
    sc = c.security_context
    assert sc.read_only_root_filesystem is True and sc.allow_privilege_escalation is False
    assert sc.capabilities.drop == ["ALL"]
    # No service account named: none, and no API token in the pod.
    assert pod.spec.service_account_name is None and pod.spec.automount_service_account_token is False


def test_no_secret_value_reaches_the_pod_spec():
    from kubernetes.client import ApiClient

    _, pod = _pod(
        _k8s_env(CLM_DATABASE_URL=f"postgresql://clm:{SECRET_VALUE}@db/clm", AWS_SECRET_ACCESS_KEY=SECRET_VALUE)
    )
    assert SECRET_VALUE not in json.dumps(ApiClient().sanitize_for_serialization(pod))


def test_a_service_account_gets_its_token_mounted():
    _, pod = _pod(_k8s_env(CLM__TRAINING__KUBERNETES__SERVICE_ACCOUNT="clm-trainer"))
    assert pod.spec.service_account_name == "clm-trainer" and pod.spec.automount_service_account_token is True


def test_deepspeed_runs_the_launcher_across_the_gpus():
    _, pod = _pod(
        _k8s_env(
            CLM__TRAINING__DEEPSPEED="include/deepspeed/zero2.json",
            CLM__TRAINING__KUBERNETES__DEEPSPEED="{enabled: true}",
        )
    )
    [c] = pod.spec.containers
    assert c.command == ["deepspeed"]
    assert c.args[:6] == ["--no_local_rank", "--num_gpus", "2", "--module", "clm_lib.cli", "train"]


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("registry.example.com/clm:latest", "latest"),
        ("registry.example.com/clm", "no tag"),
        ("clm@sha256:abc", "digest"),
    ],
)
def test_a_moving_or_missing_tag_is_refused_naming_the_field(image, says):
    with pytest.raises(ConfigError, match=r"training\.kubernetes\.image") as err:
        load_config(CLM_YAML, environ=_k8s_env(CLM__TRAINING__KUBERNETES__IMAGE=image))
    assert says in str(err.value)


def test_immutable_images_are_accepted_and_kubernetes_needs_one():
    digest = "registry.example.com:5000/clm@sha256:" + "a" * 64
    assert load_config(CLM_YAML, environ=_k8s_env(CLM__TRAINING__KUBERNETES__IMAGE=digest)).training.kubernetes.image
    env = _k8s_env()
    del env["CLM__TRAINING__KUBERNETES__IMAGE"]
    with pytest.raises(ConfigError, match=r"training\.kubernetes\.image: required"):
        _pod(env)


# --- the DAG --------------------------------------------------------------------------------------------------------


def _training_dag(monkeypatch, **env: str):
    from airflow.dag_processing.dagbag import DagBag

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "clm_continual_training.py"))
    assert bag.import_errors == {}
    return bag.dags["clm_continual_training"]


def test_the_dag_trains_in_a_pod_with_placement_kubernetes(monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    dag = _training_dag(monkeypatch, CLM__TRAINING__PLACEMENT="kubernetes", CLM__TRAINING__KUBERNETES__IMAGE=IMAGE)
    assert [t.task_id for t in dag.topological_sort()] == ["prepare", "train", "collect", "evaluate", "register"]
    pod = dag.get_task("train")
    assert isinstance(pod, KubernetesPodOperator) and pod.deferrable and pod.image == IMAGE
    assert pod.arguments == ["train", "--spec", "{{ ti.xcom_pull(task_ids='prepare') }}"]
    assert pod.pod_template_file == str(REPO_ROOT / "include" / "k8s" / "trainer-pod.yaml")
    assert all(dag.get_task(t).retries == 1 for t in ("prepare", "train", "collect"))


def test_the_dag_trains_in_the_worker_by_default(monkeypatch):
    monkeypatch.delenv("CLM__TRAINING__PLACEMENT", raising=False)
    dag = _training_dag(monkeypatch)
    assert [t.task_id for t in dag.topological_sort()] == ["train", "evaluate", "register"]
    assert type(dag.get_task("train")).__name__ == "ContinualTrainOperator"


# --- the manifests ----------------------------------------------------------------------------------------------------


def _deserialize(doc: dict, kind: str):
    from kubernetes.client import ApiClient

    # The client's own deserializer: unknown fields are dropped, so the round trip below catches misspelt ones.
    return ApiClient()._ApiClient__deserialize(doc, kind)


def _round_trip(doc: dict, obj) -> None:
    from kubernetes.client import ApiClient

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if v not in (None, {}, [])}
        return [strip(v) for v in x] if isinstance(x, list) else x

    assert strip(ApiClient().sanitize_for_serialization(obj)) == strip(doc)


def _secure(pod_spec) -> None:
    assert pod_spec.security_context.run_as_non_root is True and pod_spec.security_context.run_as_user
    assert pod_spec.automount_service_account_token is False
    for c in pod_spec.containers:
        sc = c.security_context
        assert sc.allow_privilege_escalation is False and sc.privileged is False
        assert sc.read_only_root_filesystem is True and sc.capabilities.drop == ["ALL"]


def test_the_trainer_pod_template_is_a_valid_secured_pod():
    doc = yaml.safe_load((REPO_ROOT / "include" / "k8s" / "trainer-pod.yaml").read_text())
    pod = _deserialize(doc, "V1Pod")
    _round_trip(doc, pod)
    assert pod.spec.restart_policy == "Never" and [c.name for c in pod.spec.containers] == ["base"]
    _secure(pod.spec)
    # Every writable path is a volume: the root filesystem is read-only.
    assert {m.mount_path for m in pod.spec.containers[0].volume_mounts} >= {"/work", "/tmp"}


def test_the_serving_slot_manifests_are_a_valid_secured_deployment_and_service():
    docs = list(yaml.safe_load_all((REPO_ROOT / "include" / "k8s" / "serving-slot.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    deployment, service = _deserialize(docs[0], "V1Deployment"), _deserialize(docs[1], "V1Service")
    _round_trip(docs[0], deployment)
    _round_trip(docs[1], service)
    spec = deployment.spec.template.spec
    _secure(spec)
    [c] = spec.containers
    assert c.args[0] == "serve" and "--slot" in c.args  # clm serve (clm_lib/serving/cli.py)
    for probe in (c.startup_probe, c.readiness_probe, c.liveness_probe):
        assert probe.http_get.path == "/healthz" and probe.http_get.port == "http"
    assert service.spec.selector == deployment.spec.selector.match_labels
    assert c.env_from[0].secret_ref.name and not any("URL" in e.name for e in c.env if e.value)


# --- clm train --spec, for real ---------------------------------------------------------------------------------------


EXCHANGE_BUCKET = "exchange"


@pytest.fixture
def worker(tmp_path, tiny_base, sqlite_url, mlflow_uri, monkeypatch, s3_endpoint):
    """The Airflow worker's environment (tiny.yaml, clm's DB and MLflow) with 48 curated training rows, DeepSpeed
    ZeRO-2 under the launcher, and an S3 bucket as the exchange location with the pod. Yields ``(cfg, s3 client)``."""
    from clm_lib.data import lake
    from clm_lib.demo.stream import generate_task
    from tests.s3 import use_s3

    for key, value in {
        "CLM_CONFIG": str(TINY),
        "CLM_HOME": str(tmp_path / "worker"),
        "CLM_DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "CLM__MODEL__BASE_PATH": str(tiny_base),
        "CLM__TRAINING__MAX_STEPS": "8",
        "CLM__TRAINING__CHECKPOINT_EVERY": "4",
        "CLM__TRAINING__PLACEMENT": "kubernetes",
        "CLM__TRAINING__KUBERNETES__WORK_URI": f"s3://{EXCHANGE_BUCKET}/work",
        "CLM__TRAINING__KUBERNETES__DEEPSPEED__ENABLED": "true",
        "CLM__TRAINING__DEEPSPEED": "include/deepspeed/zero2.json",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLM_FAULT_AT", raising=False)
    with use_s3(monkeypatch, s3_endpoint, EXCHANGE_BUCKET) as s3:
        cfg = load_config()
        now, tickets = datetime.now(UTC), generate_task("routers", 48, 0)
        rows = [{"id": f"routers-{i}", **r, "split": "train", "source": "t", "batch_id": "b", "line": i,
                 "ingested_at": now, "metadata": "{}"} for i, r in enumerate(tickets)]  # fmt: skip
        lake.append(cfg, "curated", pa.Table.from_pylist(rows))
        yield cfg, s3


def _context() -> dict:
    return {
        "params": {"force": True, "reason": "test", "drift_check_id": ""},
        "dag": SimpleNamespace(dag_id="clm_continual_training"),
        "run_id": "manual__1",
        "dag_run": SimpleNamespace(run_type="manual", triggering_user_name="alice"),
    }


def _pod_process(training, spec_uri: str, home: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """The pod's command (``deepspeed ... clm train --spec``) as the pod runs it: no clm config, no database, no
    lake; a home of its own; the object store's endpoint and keys from the environment (Secrets in the pod)."""
    from clm_lib.airflow.operators.training_pod import trainer_command

    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "CLM_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "DS_ACCELERATOR": "cpu", "CLM_LAKE_STORAGE_OPTIONS": os.environ["CLM_LAKE_STORAGE_OPTIONS"]}  # fmt: skip
    if fault:
        env["CLM_FAULT_AT"] = fault
    command, args = trainer_command(training, spec_uri)
    assert command == ["deepspeed"]
    with socket.socket() as probe:  # the launcher's rendezvous port: a free one, as other tests may run beside
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = str(Path(sys.executable).parent / "deepspeed")  # the virtualenv's, whether or not it is on PATH
    return subprocess.run([launcher, "--master_port", str(port), *args], env=env, cwd=home.parent,
                          capture_output=True, text=True, timeout=420)  # fmt: skip


def _keys(s3, uri: str) -> set[str]:
    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    return {o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", [])}


def _adapter(s3, spec) -> dict:
    from safetensors.torch import load

    bucket, _, prefix = spec.output_uri.split("://", 1)[1].partition("/")
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/adapter/adapter_model.safetensors")["Body"].read()
    return load(body)


@pytest.mark.slow
def test_prepare_then_a_killed_pod_resumed_then_collect_records_the_run(worker, tmp_path):
    import torch
    from safetensors.torch import load_file
    from sqlalchemy import select

    from clm_lib.airflow.operators.training_pod import CollectTrainingOperator, PrepareTrainingOperator
    from clm_lib.data import lake
    from clm_lib.db import session_scope
    from clm_lib.db.models import TrainingRun
    from clm_lib.training.recipe import SUMMARY_FILE
    from clm_lib.training.spec import read_spec, write_spec
    from clm_lib.training.update import plan_update

    cfg, s3 = worker
    spec_uri = PrepareTrainingOperator(task_id="prepare", force=True, remove_task="").execute(_context())
    spec = read_spec(spec_uri)
    assert spec_uri.startswith(f"s3://{EXCHANGE_BUCKET}/work/") and spec.curated_version == 0 and spec.train
    assert set(spec.config) == {"data", "model", "training"}  # no database, registry or other secret-bearing section
    assert spec.config["training"]["deepspeed"], "the pod trains under DeepSpeed"
    with session_scope(cfg.database_url) as s:
        [run] = s.scalars(select(TrainingRun)).all()
        assert (run.id, run.status) == (spec.run_id, "running")

    # The same spec trained by a pod that is never interrupted, under another run's exchange folders: the weights
    # the resumed run must end with.
    straight = spec.model_copy(update={k: getattr(spec, k).replace(spec.run_id, "straight")
                                       for k in ("output_uri", "checkpoint_uri")})  # fmt: skip
    straight_uri = spec_uri.replace(spec.run_id, "straight")
    write_spec(straight_uri, straight)
    assert _pod_process(cfg.training, straight_uri, tmp_path / "straight" / "clm").returncode == 0

    # A pod killed after its step-4 checkpoint; its retry is a new pod, whose emptyDir at the same mount path starts
    # empty, and resumes from the checkpoint in the bucket.
    pod_home = tmp_path / "pod" / "clm"
    killed = _pod_process(cfg.training, spec_uri, pod_home, fault="train.mid_step@6")
    assert killed.returncode != 0 and "fault injected" in killed.stdout + killed.stderr, killed.stderr[-3000:]
    assert "step-000004/trainer_state.pt" in _keys(s3, spec.checkpoint_uri)
    assert not _keys(s3, spec.output_uri), "the killed pod wrote no result"
    shutil.rmtree(pod_home)
    done = _pod_process(cfg.training, spec_uri, pod_home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 8 steps" in done.stdout
    summary_key = spec.output_uri.split("/", 3)[3] + f"/{SUMMARY_FILE}"
    summary = json.loads(s3.get_object(Bucket=EXCHANGE_BUCKET, Key=summary_key)["Body"].read())
    assert summary["resumed_from_step"] == 4 and summary["run_id"] == spec.run_id
    expected, got = _adapter(s3, straight), _adapter(s3, spec)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    again = _pod_process(cfg.training, spec_uri, tmp_path / "pod-3")  # a retry after it finished trains nothing
    assert again.returncode == 0 and "nothing to train" in again.stdout

    run_id = CollectTrainingOperator(task_id="collect", spec_uri=spec_uri).execute(_context())
    assert run_id == spec.run_id
    with session_scope(cfg.database_url) as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == "succeeded" and run.metrics["steps"] == 8 and run.trigger["reason"] == "test"
        assert run.strategies["replay"]["buffer_version_written"] is not None
        output = Path(run.output_dir)
    assert load_file(str(output / "adapter" / "adapter_model.safetensors"))
    assert lake.table_version(cfg, "replay") is not None  # the strategies' state written back, as locally
    assert not plan_update(cfg, force=True).should_train  # its rows count as trained on
