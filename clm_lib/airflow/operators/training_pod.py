"""Training in a Kubernetes pod (``training.placement: kubernetes``): prepare → pod → collect.

- :class:`PrepareTrainingOperator` decides as :class:`~clm_lib.airflow.operators.training.ContinualTrainOperator`
  does (the same :class:`~clm_lib.airflow.operators.training.TrainingDecision`), records the run and writes its
  training spec (:mod:`clm_lib.training.spec`); it returns the spec's URI;
- :func:`trainer_pod` builds the ``KubernetesPodOperator`` that runs ``clm train --spec <uri>`` with what
  ``training.kubernetes`` says (image, GPUs, resources, node selector, tolerations, Secrets, /dev/shm, template);
- :class:`CollectTrainingOperator` records the pod's update in clm's database as local training does and returns
  the run id, so evaluate and register follow unchanged.

The provider is imported only on this path: a DAG on ``local`` placement never pays for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clm_lib.airflow.operators.training import TrainingDecision, describe_trigger

if TYPE_CHECKING:
    from clm_lib.config import TrainingConfig

SPEC_XCOM = "{{ ti.xcom_pull(task_ids='prepare') }}"
"""The spec URI the prepare task returned, as the pod and collect tasks template it."""
TRAINER_LABELS = {"app.kubernetes.io/name": "clm", "app.kubernetes.io/component": "trainer"}
SHM_VOLUME = "dshm"


def dag_training_config() -> TrainingConfig:
    """The ``training`` section as the DAG file sees it when parsed: the config file and ``CLM__*`` variables (not
    the Airflow connection nor run-time revisions: which tasks a DAG has cannot change between runs)."""
    from clm_lib.config import DEFAULT_CONFIG, load_config

    return load_config(os.environ.get("CLM_CONFIG") or DEFAULT_CONFIG).training


class PrepareTrainingOperator(TrainingDecision):
    """Plan (or skip with the policy's reason), record the run and write the spec the pod trains from."""

    def execute(self, context: Any) -> str:
        from clm_lib.training.spec import TrainingSpec, prepare_spec, spec_uri, write_spec
        from clm_lib.training.update import start_update

        self.quiet_libraries()
        cfg = self.cfg
        trigger = describe_trigger(context)
        if self.task_to_remove():
            # Nothing to train, but the same task chain: the pod finds `train: false` and exits at once.
            run_id = self.remove(cfg, self.task_to_remove(), trigger, context)
            uri = spec_uri(cfg, run_id)
            write_spec(uri, TrainingSpec(run_id=run_id, train=False))
            return uri
        plan = self.plan(cfg, trigger)
        started = start_update(
            cfg,
            trigger={**trigger, "plan": plan.reason},
            plan=plan,
            airflow_dag_id=context["dag"].dag_id,
            airflow_run_id=context["run_id"],
        )
        return prepare_spec(cfg, started)


class CollectTrainingOperator(TrainingDecision):
    """The pod's adapter into the run's output folder, the strategies' state written back, the run ``succeeded``,
    the requesting drift checks linked to it. Returns the training run id."""

    template_fields = ("spec_uri",)

    def __init__(self, *, spec_uri: str = SPEC_XCOM, **kwargs):
        super().__init__(**kwargs)
        self.spec_uri = spec_uri

    def execute(self, context: Any) -> str:
        from clm_lib.training.spec import collect_spec

        self.quiet_libraries()
        cfg = self.cfg
        run = collect_spec(cfg, self.spec_uri)
        if isinstance(run, str):
            return run
        self.link_checks(cfg, (run.trigger or {}).get("drift_checks", []), run.id)
        self.log.info("training run %s: %s", run.id, run.metrics)
        return run.id


def _template_path(path: Path) -> str:
    from clm_lib.config import REPO_ROOT

    return str(path if path.is_absolute() else REPO_ROOT / path)


def trainer_command(training: TrainingConfig, spec_uri: str) -> tuple[list[str], list[str]]:
    """The container's command and arguments: ``clm train --spec``, under the ``deepspeed`` launcher if asked."""
    ds = training.kubernetes.deepspeed
    if not ds.enabled:
        return ["clm"], ["train", "--spec", spec_uri]
    n = ds.num_gpus or max(training.kubernetes.gpus, 1)
    # --module: the launcher runs `python -m clm_lib.cli` in each process; --no_local_rank: ranks read RANK instead.
    return ["deepspeed"], ["--no_local_rank", "--num_gpus", str(n), "--module", "clm_lib.cli", "train", "--spec",
                           spec_uri]  # fmt: skip


def trainer_pod(training: TrainingConfig, *, task_id: str = "train", spec_uri: str = SPEC_XCOM, **kwargs) -> Any:
    """The ``KubernetesPodOperator`` that trains one spec, as ``training.kubernetes`` describes it."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    from clm_lib.errors import ConfigError

    kube = training.kubernetes
    if kube.image is None:
        raise ConfigError("training.kubernetes.image: required with training.placement: kubernetes")
    if kube.deepspeed.enabled and training.deepspeed is None:
        raise ConfigError("training.kubernetes.deepspeed.enabled needs training.deepspeed (the ZeRO config)")
    res = kube.resources
    requests = {k: v for k, v in {"cpu": res.cpu_request, "memory": res.memory_request}.items() if v}
    limits = {k: v for k, v in {"cpu": res.cpu_limit, "memory": res.memory_limit}.items() if v}
    if kube.gpus:
        limits["nvidia.com/gpu"] = str(kube.gpus)  # extended resources: the limit is the request
    volumes, mounts = [], []
    if kube.shm_size:
        volumes.append(
            k8s.V1Volume(
                name=SHM_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=kube.shm_size)
            )
        )
        mounts.append(k8s.V1VolumeMount(name=SHM_VOLUME, mount_path="/dev/shm"))
    # References only: the kubelet resolves them, so no credential passes through Airflow or the rendered spec.
    secrets = [
        Secret("env", None, s) if isinstance(s, str) else Secret("env", s.env, s.name, s.key) for s in kube.secrets
    ]
    cmds, arguments = trainer_command(training, spec_uri)
    return KubernetesPodOperator(
        task_id=task_id,
        namespace=kube.namespace,
        image=kube.image,
        image_pull_policy=kube.image_pull_policy,
        pod_template_file=_template_path(kube.pod_template),
        cmds=cmds,
        arguments=arguments,
        labels=TRAINER_LABELS,
        container_resources=k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        node_selector=kube.node_selector or None,
        tolerations=[k8s.V1Toleration(**t.model_dump()) for t in kube.tolerations] or None,
        volumes=volumes,
        volume_mounts=mounts,
        secrets=secrets,
        service_account_name=kube.service_account,
        # No API token in a pod that does not need one: only a named service account (e.g. a cloud role) gets it.
        automount_service_account_token=kube.service_account is not None,
        startup_timeout_seconds=kube.startup_timeout_seconds,
        active_deadline_seconds=kube.timeout_seconds,
        deferrable=True,
        get_logs=True,
        **kwargs,
    )


def pod_training(training: TrainingConfig, **kwargs) -> CollectTrainingOperator:
    """prepare >> train (the pod) >> collect, in the DAG being defined; returns collect (its output is the run id).
    ``kwargs`` (retries...) go to all three."""
    prepare = PrepareTrainingOperator(task_id="prepare", **kwargs)
    pod = trainer_pod(training, task_id="train", **kwargs)
    collect = CollectTrainingOperator(task_id="collect", **kwargs)
    prepare >> pod >> collect
    return collect
