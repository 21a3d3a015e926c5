"""Where a continual update trains (``training.placement``) and, on Kubernetes, in what pod (``training.kubernetes``).

``local`` trains inside the Airflow worker (:class:`~clm_lib.airflow.operators.training.ContinualTrainOperator`).
``kubernetes`` trains in a pod started by ``KubernetesPodOperator``: the task before it writes a training spec
(:mod:`clm_lib.training.spec`), the pod runs ``clm train --spec URI``, the task after it records the run. Every
field below becomes part of that pod (``clm_lib/airflow/operators/training_pod.py``); docs/production.md walks
through it. Kept free of Kubernetes and Airflow imports, so loading the config stays light.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
"""A Kubernetes resource quantity as people write it (``500m``, ``2``, ``16Gi``)."""
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
"""A DNS-1123 name: what Kubernetes accepts for a namespace, Secret or service account."""
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_image(image: str) -> str:
    """``image`` when it names one immutable build: a digest (``repo@sha256:...``) or a tag other than ``latest``.

    A moving tag would let two retries of one update run different code, and lineage would name the wrong one."""
    if "@" in image:
        if not re.search(r"@sha256:[0-9a-f]{64}$", image):
            raise ValueError(f"{image!r} has a malformed digest (expected repo@sha256:<64 hex digits>)")
        return image
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(f"{image!r} has no tag: name an immutable tag or a digest (repo@sha256:...)")
    if last.rsplit(":", 1)[1] in ("", "latest"):
        raise ValueError(f"{image!r} uses the moving tag 'latest': name an immutable tag or a digest (repo@sha256:...)")
    return image


def _quantity(value: str | None) -> str | None:
    if value is not None and not _QUANTITY.match(str(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
    return value


class Resources(_Section):
    """CPU and memory of the trainer container (GPUs are ``gpus``)."""

    cpu_request: str | None = "2"
    """CPU the scheduler reserves (a Kubernetes quantity: ``2``, ``500m``)."""
    cpu_limit: str | None = None
    """CPU ceiling; ``null`` leaves it unbounded (throttling slows data loading more than it protects)."""
    memory_request: str | None = "16Gi"
    """Memory the scheduler reserves."""
    memory_limit: str | None = "16Gi"
    """Memory ceiling: past it the kernel kills the trainer (the retry resumes its checkpoint)."""

    _check = field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")(_quantity)


class Toleration(_Section):
    """One toleration, as in a pod spec (GPU nodes are usually tainted)."""

    key: str | None = None
    """Taint key, e.g. ``nvidia.com/gpu``; ``null`` with ``operator: Exists`` tolerates every taint."""
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    """Taint value (only with ``operator: Equal``)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect; ``null`` matches every effect."""


class SecretKey(_Section):
    """One key of a Kubernetes Secret as one environment variable (``secretKeyRef``)."""

    name: str
    """The Secret's name."""
    key: str
    """The key inside it."""
    env: str
    """The environment variable the pod sees it as, e.g. ``AWS_SECRET_ACCESS_KEY``."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Secret name")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: str) -> str:
        if not _ENV.match(v):
            raise ValueError(f"{v!r} is not a valid environment variable name")
        return v


class DeepSpeedPlacement(_Section):
    """Run the trainer under the ``deepspeed`` launcher across the pod's GPUs."""

    enabled: bool = False
    """Start ``deepspeed --no_local_rank --num_gpus N`` instead of ``clm`` directly; the recipe also needs
    ``training.deepspeed`` (the ZeRO config)."""
    num_gpus: int | None = Field(default=None, ge=1)
    """Processes the launcher starts; ``null``: as many as ``gpus``."""


class KubernetesTrainingConfig(_Section):
    """The trainer pod of ``training.placement: kubernetes``."""

    namespace: str = "clm"
    """Namespace the trainer pods run in."""
    image: str | None = None
    """Trainer image with clm installed: an immutable tag or a digest (``registry/clm:1.4.2`` or
    ``registry/clm@sha256:...``). ``latest`` and untagged images are refused. Required for ``kubernetes``."""
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    """When the node pulls the image; an immutable tag makes ``IfNotPresent`` safe."""
    gpus: int = Field(default=1, ge=0)
    """GPUs per pod (the ``nvidia.com/gpu`` limit); 0 trains on CPU."""
    resources: Resources = Resources()
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pod must land on, e.g. ``{nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}``."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the pod tolerates, e.g. ``[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]``."""
    service_account: str | None = None
    """Service account of the pod (e.g. one bound to a cloud role for the object store). ``null``: none, and no
    API token is mounted into the pod."""
    shm_size: str | None = "8Gi"
    """Size of ``/dev/shm`` (an in-memory ``emptyDir``): data loaders and NCCL need more than the 64 MiB default.
    ``null`` keeps the default."""
    secrets: list[str | SecretKey] = Field(default_factory=list)
    """Kubernetes Secrets the pod gets as environment variables: a name puts every key of that Secret in the
    environment (``envFrom``), ``{name, key, env}`` one key (``secretKeyRef``). Only the names enter the pod spec,
    never the values: put the object store's and the registry's credentials here."""
    pod_template: Path = Path("include/k8s/trainer-pod.yaml")
    """Pod template the pod is built on (security context, volumes); a relative path is read from the clm source
    root."""
    startup_timeout_seconds: int = Field(default=600, ge=1)
    """How long the pod may stay pending (image pull, GPU node scale-up) before the task fails."""
    timeout_seconds: int = Field(default=6 * 3600, ge=60)
    """Longest a training pod may run (``activeDeadlineSeconds``); past it Kubernetes stops it and the task fails."""
    work_uri: str | None = None
    """Where the task and the pod exchange the spec, the inputs, the checkpoints and the outputs: a folder both
    mount, or ``s3://bucket/prefix``. ``null``: ``<paths.lake>/_training``."""
    deepspeed: DeepSpeedPlacement = DeepSpeedPlacement()

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return None if v is None else check_image(v)

    @field_validator("namespace", "service_account")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: list[str | SecretKey]) -> list[str | SecretKey]:
        bad = [s for s in v if isinstance(s, str) and not _NAME.match(s)]
        if bad:
            raise ValueError(f"not valid Secret names: {bad}")
        return v

    _shm = field_validator("shm_size")(_quantity)
