"""Typed clm configuration: one YAML file, validated, with environment overrides.

The file (default ``include/clm.yaml``, or ``$CLM_CONFIG``) is loaded into :class:`ClmConfig`, with a profile
(``include/profiles/<name>.yaml``: where the stores are and which executor runs the tasks) merged over it when one
is in force (``$CLM_PROFILE``, or the one ``clm init --profile`` recorded in the home).
Any field can be overridden from the environment as ``CLM__<SECTION>__<FIELD>=value`` (values
are parsed as YAML, so ``CLM__TRAINING__MAX_STEPS=50`` is an int). Relative paths are resolved
against ``home`` (``$CLM_HOME``, default ``./.clm``), so one folder holds all local state.

A wrong value raises :class:`ConfigError`, whose message names the dotted field and the value.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from clm_lib.alerts.config import AlertsConfig
from clm_lib.deploy.config import DeployConfig, check_lease
from clm_lib.drift.config import DriftConfig
from clm_lib.errors import ConfigError
from clm_lib.evaluation.task_metrics import DEFAULT_METRIC, METRICS
from clm_lib.redaction import SecretUrl, redact_text
from clm_lib.services.config import ServerConfig
from clm_lib.serving.config import ServingConfig
from clm_lib.training.adapter_config import AdaptersConfig
from clm_lib.training.placement import KubernetesTrainingConfig
from clm_lib.training.strategy_config import DistillationConfig, EwcConfig, FreezeConfig, ReplayConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "include" / "clm.yaml"
ENV_PREFIX = "CLM__"


class _Section(BaseModel):
    # Unknown keys are typos more often than not; refuse them so the user hears about it.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(_Section):
    """Where clm keeps its local state. Relative paths are resolved against ``home``."""

    home: Path = Field(default=Path(".clm"))
    """Root folder of all local state (``$CLM_HOME`` wins over this value)."""
    landing: str = "landing"
    """Folder watched by ``clm_ingest``; files are moved to ``landing/processed`` once ingested. Or
    ``s3://bucket/prefix`` (objects moved to ``prefix/processed/``; endpoint and credentials as for the lake)."""
    lake: str = "lake"
    """Delta Lake root (``$CLM_DATA_URI`` wins): a folder, or ``s3://bucket/prefix`` in production."""
    models: Path = Path("models")
    """Where base models, training outputs and checkpoints are written."""
    logs: Path = Path("logs")
    """Logs of the processes ``clm up`` starts."""


class DatabaseConfig(_Section):
    """clm's own state database (never Airflow's metadata DB)."""

    url: SecretUrl | None = None
    """SQLAlchemy URL (``$CLM_DATABASE_URL`` wins). Default: SQLite file ``clm.db`` under home. A secret: dumps and
    messages show it without its password (``clm_lib/redaction.py``); ``ClmConfig.database_url`` is the real one."""


class WebhookConfig(_Section):
    """Records pushed to ``POST /clm/api/v1/ingest`` (``clm_lib/data/push.py``): one POST is one micro-batch."""

    max_body_bytes: int = Field(default=8 * 1024**2, ge=1, le=1024**3)
    """A POST whose body is larger is refused (413) before more than this is read: nothing is ingested."""
    max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    """A POST holding more records is refused (413): nothing is ingested; send it in smaller POSTs."""
    max_outcomes: int = Field(default=1000, ge=0, le=100_000)
    """Per-record outcomes listed in an answer (the first ones); its counts always cover every record."""
    lock_wait_s: float = Field(default=60.0, gt=0, le=3600)
    """How long a POST waits for the push before it to finish (pushes are ingested one at a time), then 503."""


class KafkaConfig(_Section):
    """Records consumed from a Kafka topic by ``clm_ingest_stream`` (``clm_lib/data/stream.py``): one micro-batch
    per partition per poll window, exactly once (docs/design.md, "Kafka (exactly once)")."""

    enabled: bool = False
    """Consume the topic: ``clm up`` starts a local broker (when ``bootstrap_servers`` is on loopback) and the
    ``clm_ingest_stream`` DAG's watcher and task run. Off: that DAG does nothing and no broker is started."""
    bootstrap_servers: str = "127.0.0.1:19092"
    """``host:port[,host:port...]`` of the brokers. A loopback address (``127.0.0.1``/``localhost``) is the local
    Tansu broker that ``clm up`` starts; any other is an existing cluster that clm only connects to."""
    topic: str = "clm.records"
    """Topic the records arrive on; each message value is one JSON object ``{task, prompt, response, ...}``."""
    group_id: str = "clm-ingest"
    """Consumer group whose committed offsets say where ingestion resumes; the ``clm_ingest_stream`` task owns it.
    The DAG's trigger only peeks, under its own group (``<group_id>.watcher``), so it never moves these offsets."""
    poll_window_s: float = Field(default=5.0, gt=0, le=3600)
    """A micro-batch collects messages for at most this long (or ``max_records``, whichever comes first)."""
    max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    """A micro-batch holds at most this many messages."""
    max_message_bytes: int = Field(default=1024**2, ge=1, le=64 * 1024**2)
    """A larger message value is quarantined (``message_too_large``, its content not kept) and consumed past."""
    max_windows_per_run: int = Field(default=100, ge=1)
    """One task run stops after this many poll windows (or the first empty one), so a busy topic cannot hold the
    task forever; the next trigger event starts another run."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        for server in v.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server.strip()!r} is not host:port (use host:port[,host:port...])")
        return v

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", v) or v in (".", ".."):
            raise ValueError("a Kafka topic name is 1 to 249 characters among letters, digits, '.', '_' and '-'")
        return v

    @field_validator("group_id")
    @classmethod
    def _group_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class IngestConfig(_Section):
    """Streaming sources of records (files and webhook pushes are configured under ``data``)."""

    kafka: KafkaConfig = KafkaConfig()
    """A Kafka topic consumed exactly once by ``clm_ingest_stream``."""


class DataConfig(_Section):
    """Ingestion and validation of prompt/response records."""

    tasks: list[str] = Field(min_length=1)
    """Known task names. A record naming another task is quarantined (``unknown_task``)."""
    formats: list[Literal["jsonl", "csv", "parquet"]] = ["jsonl", "csv", "parquet"]
    """File formats picked up from the landing folder, by extension."""
    min_prompt_chars: int = Field(default=3, ge=1)
    """Shorter prompts are quarantined."""
    max_prompt_chars: int = Field(default=2000, ge=1)
    """Longer prompts are quarantined (they would be truncated silently in training)."""
    min_response_chars: int = Field(default=1, ge=1)
    """Shorter responses are quarantined."""
    max_response_chars: int = Field(default=1000, ge=1)
    """Longer responses are quarantined."""
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Share of records held out for evaluation, chosen by content hash so it is stable."""
    gx_suite: str = "curated_records"
    """Name of the Great Expectations suite in ``include/gx/`` that decides what is curated."""
    gx_engine: Literal["arrow", "gx"] = "arrow"
    """How the suite is evaluated per batch. ``arrow``: the expectation types the shipped suite uses are evaluated
    on Arrow columns with GX's semantics (``clm_lib/validation/native.py``, checked against GX row for row in its
    tests; ~10x faster per batch), any other type by GX itself. ``gx``: every batch runs through GX's own engine
    (pandas), for teams whose auditors want GX's code path on every row. Data Docs are GX's either way."""
    encoding: str = "utf-8"
    """Text encoding of JSONL and CSV files: ``utf-8`` (strict: lines that are not UTF-8 are quarantined, with the
    encoding the file looks like named in the reason), ``auto`` (a file that is not UTF-8 is read as the encoding it
    clearly looks like: Windows-1252/Latin-1, or UTF-16 with a BOM), or any Python codec name (``cp1252``...).
    See ``clm_lib/data/encoding.py``."""
    max_file_bytes: int = Field(default=512 * 1024**2, ge=1)
    """A landing file larger than this on disk is not read: it is quarantined as a whole (``file_too_large``)."""
    max_decoded_bytes: int = Field(default=1024**3, ge=1)
    """Largest size of one file's records once decoded (Arrow bytes). Parquet is read in batches and refused
    (``decoded_too_large``) as soon as it passes this, so a compression bomb never fills memory."""
    max_rows_per_file: int = Field(default=5_000_000, ge=1)
    """A file with more records than this is quarantined as a whole (``too_many_rows``): split it."""
    allow_hard_links: bool = False
    """Read landing files that have other hard links. Off: such a file may be another file's content (outside the
    landing folder) under a new name, so it is quarantined as a whole (``hard_link_refused``). Symlinks, FIFOs and
    devices are never read."""
    max_attempts: int = Field(default=2, ge=1)
    """A file whose ingestion crashed this many times (an error, or the process killed mid-batch: out of memory)
    is moved to ``landing/failed/`` with the error, so the files after it go on."""
    webhook: WebhookConfig = WebhookConfig()
    """Limits of pushed ingestion (``POST /clm/api/v1/ingest``)."""

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        if v not in ("utf-8", "auto"):
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"unknown text encoding {v!r} (use utf-8, auto or a Python codec name)") from None
        return v

    @model_validator(mode="after")
    def _bounds(self) -> DataConfig:
        if self.min_prompt_chars > self.max_prompt_chars:
            raise ValueError("min_prompt_chars must not exceed max_prompt_chars")
        if self.min_response_chars > self.max_response_chars:
            raise ValueError("min_response_chars must not exceed max_response_chars")
        return self


DEFAULT_PROMPT_TEMPLATE = "Support request:\n{prompt}\nTriage:"
"""The demo's template: no task id in it, the request itself names the product, as a live request would."""


class PromptConfig(_Section):
    """How a request becomes model input (``clm_lib/modeling/prompt.py``). A trained adapter keeps the format it was
    trained with: versions already registered answer in theirs, and an update continuing one refuses another."""

    kind: Literal["template", "chat"] = "template"
    """``template``: ``template`` with the request in place of ``{prompt}``. ``chat``: the tokenizer's own chat
    template (a user's chat model), the request as the user message; its EOS token must end an assistant turn."""
    template: str = DEFAULT_PROMPT_TEMPLATE
    """Used when ``kind`` is ``template``: text with exactly one field, ``{prompt}`` (write other braces as ``{{``
    and ``}}``). The answer is trained to follow it after one space."""
    system: str | None = None
    """Used when ``kind`` is ``chat``: a system message put before every request (none by default)."""

    @field_validator("template")
    @classmethod
    def _one_prompt_field(cls, v: str) -> str:
        import string

        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(v) if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
        if fields != ["prompt"]:
            raise ValueError(f"must contain {{prompt}} exactly once and no other field, found {fields or 'none'}")
        return v

    @model_validator(mode="after")
    def _system_needs_chat(self) -> PromptConfig:
        if self.system is not None and self.kind != "chat":
            raise ValueError("system is only used with kind: chat (put it in the template instead)")
        return self


class ModelConfig(_Section):
    """The base model that adapters are trained on."""

    base_path: Path = Path("models/base")
    """Local folder loaded with ``from_pretrained`` (point it at your own model)."""
    build_if_missing: bool = True
    """Build the small demo model from ``architecture`` when ``base_path`` is empty."""
    architecture: dict[str, Any] = Field(
        default_factory=lambda: {
            "model_type": "llama",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 256,
        }
    )
    """``transformers`` config used when building the demo model (``AutoConfig.for_model``)."""
    vocab_size: int = Field(default=1024, ge=256)
    """Vocabulary size of the locally trained byte-level BPE tokenizer of the demo model."""
    max_length: int = Field(default=96, ge=16)
    """Prompt + response tokens; a longer example loses the start of its request (the prompt format stays)."""
    seed: int = 0
    """Seed for building the demo model, so every machine builds the same one."""
    pretrain_steps: int = Field(default=150, ge=0)
    """Warm-up pretraining steps of a built demo model on unlabelled support text (0: leave it random)."""
    pretrain_learning_rate: float = Field(default=3e-3, gt=0)
    """Learning rate of that warm-up pretraining."""
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    """The prompt format: a plain template (the demo's) or the tokenizer's chat template."""


class LoraConfig(_Section):
    """PEFT LoRA adapter settings."""

    r: int = Field(default=16, ge=1)
    """Adapter rank."""
    alpha: int = Field(default=32, ge=1)
    """Scaling numerator: the update is scaled by ``alpha / r``."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""
    target_modules: list[str] | str = "all-linear"
    """Modules that get adapters (PEFT syntax)."""


class DomainConfig(_Section):
    """Domain adaptation (``clm adapt-domain``): continued pretraining of a LoRA adapter on unlabelled in-domain
    text, merged into a copy of the base (``clm_lib/training/domain.py``). Off unless that command runs."""

    max_steps: int = Field(default=200, ge=1)
    """Optimizer steps of causal-LM training on the text chunks."""
    batch_size: int = Field(default=16, ge=1)
    """Chunks per step."""
    learning_rate: float = Field(default=2e-3, gt=0)
    """Peak learning rate (linear warmup, cosine decay, as in task training)."""
    warmup_steps: int = Field(default=10, ge=0)
    """Steps of linear warmup."""
    chunk_tokens: int | None = Field(default=None, ge=8)
    """Tokens per training chunk (documents are concatenated, each between BOS and EOS, and cut into chunks);
    ``null``: ``model.max_length``, the length task adapters will train at."""
    heldout_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    """Share of the chunks (a seeded sample, at least one when there are two) kept out of training to measure the
    raw-text loss before and after; 0 measures nothing."""
    seed: int = 0
    """Seeds the LoRA initialisation, the held-out sample and the batch order: same seed and text, same base."""
    max_file_bytes: int = Field(default=64 * 1024**2, ge=1)
    """A text file larger than this is refused (read whole into memory)."""
    lora: LoraConfig = LoraConfig()
    """The adapter trained on the text, then merged (its rank bounds how far the base can move)."""
    freeze: FreezeConfig = FreezeConfig()
    """Parameters left as they are (``training.freeze``'s fields); a frozen layer's LoRA is not merged, so its
    weights in the adapted base are the original's, byte for byte. Freezing the lowest blocks keeps the features
    earlier task adapters were trained on."""


class TrainingConfig(_Section):
    """The continual training loop."""

    @model_validator(mode="before")
    @classmethod
    def _removed_min_new_rows(cls, data: Any) -> Any:
        # Issue #9: one answer to "is there enough new data", the drift policy's. A silent mapping would be wrong
        # (the two thresholds meant different runs), so a file that still sets it hears what to set instead.
        if isinstance(data, dict) and "min_new_rows" in data:
            raise ValueError(
                "training.min_new_rows was removed: the drift policy alone decides when enough new data arrived; "
                "set drift.volume.min_new_rows (and drift.volume.initial_rows for the first training) instead"
            )
        return data

    max_steps: int = Field(default=200, ge=1)
    """Optimizer steps per update."""
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=5e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=20, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradients are clipped to this global L2 norm before each optimizer step."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Write a resumable checkpoint every N steps."""
    seed: int = 0
    threads: int = Field(default=1, ge=1)
    """torch CPU threads. One by default: the demo model's matrices are too small to gain much from a second
    thread (~20 % per step on an idle 2-core machine), and when other processes share the cores, two spinning
    OpenMP threads made steps up to 5x slower (measured in the forgetting pilot before bench/continual.py)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lora: LoraConfig = LoraConfig()
    replay: ReplayConfig = ReplayConfig()
    """Continual-learning strategies, each documented field by field in ``clm_lib/training/strategy_config.py``."""
    ewc: EwcConfig = EwcConfig()
    distillation: DistillationConfig = DistillationConfig()
    freeze: FreezeConfig = FreezeConfig()
    domain: DomainConfig = DomainConfig()
    """Domain adaptation of the base on raw text, before task adapters (``clm adapt-domain``)."""
    adapters: AdaptersConfig = AdaptersConfig()
    """Shared or per-task LoRA adapters and their router (documented in ``clm_lib/training/adapter_config.py``)."""
    deepspeed: Path | None = None
    """DeepSpeed config JSON to train under DeepSpeed (``include/deepspeed/zero{0,1,2}.json``; a relative path is
    read from the clm source root); ``null`` trains with plain PyTorch. See ``clm_lib/training/deepspeed.py``."""
    placement: Literal["local", "kubernetes"] = "local"
    """Where updates train: ``local`` in the Airflow worker, ``kubernetes`` in a pod per update (``kubernetes``
    below; docs/production.md). Read when the DAG file is parsed, from the file and ``CLM__*`` variables."""
    kubernetes: KubernetesTrainingConfig = KubernetesTrainingConfig()
    """The trainer pod (documented field by field in ``clm_lib/training/placement.py``)."""


class EvaluationConfig(_Section):
    """Evaluation of every task after every update."""

    max_examples_per_task: int = Field(default=200, ge=1)
    """Held-out examples scored per task (a stable subset, so rows stay comparable)."""
    batch_size: int = Field(default=64, ge=1)
    metrics: dict[str, str] = {}
    """Task -> its primary metric, the score the accuracy matrix and the promotion gate use: ``exact_match``
    (default for a task not listed), ``label_accuracy``, ``macro_f1``, ``token_f1`` or ``rouge_l``
    (``clm_lib/evaluation/task_metrics.py``). Every metric is computed and stored for every task either way."""

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted({name for name in v.values() if name not in METRICS})
        if unknown:
            raise ValueError(f"unknown metric {', '.join(map(repr, unknown))} (use one of {', '.join(METRICS)})")
        return v

    def metric(self, task: str) -> str:
        """The primary metric of ``task``."""
        return self.metrics.get(task, DEFAULT_METRIC)


class RegistryConfig(_Section):
    """MLflow tracking and registry."""

    tracking_uri: SecretUrl | None = None
    """MLflow tracking URI (``$MLFLOW_TRACKING_URI`` wins). Default: SQLite under home. A secret, like
    ``database.url``; ``ClmConfig.tracking_uri`` is the real one."""
    artifacts_uri: str | None = None
    """Where the MLflow server ``clm up`` starts keeps artifacts (adapters, reports): a folder, or ``s3://bucket/prefix``
    (endpoint and credentials from the standard ``AWS_*`` variables, which every client needs too: clients read and
    write artifacts directly, the server does not proxy them). Default: ``mlartifacts`` under home."""
    experiment: str = "clm"
    model_name: str = "clm-assistant"
    """Registered model name; aliases ``champion`` and ``challenger`` live on it."""


class GateConfig(_Section):
    """Promotion gate: a candidate replaces the champion only if no old task regressed."""

    max_task_drop: float = Field(default=5.0, ge=0)
    """Largest allowed drop, in accuracy points (0-100), of any task against the champion."""
    min_new_task_accuracy: float = Field(default=0.0, ge=0, le=100)
    """A task seen for the first time must reach at least this accuracy."""


class LakeConfig(_Section):
    """Maintenance of the Delta tables (``clm_lake_maintenance``, ``clm data optimize|vacuum``)."""

    vacuum_retention_hours: int = Field(default=168, ge=0)
    """Vacuum removes only data files unreferenced for at least this long; a version a registered model was trained
    on, or the live deployment depends on, keeps its files whatever this says (``clm_lib/data/maintenance.py``)."""
    optimize_target_mb: int = Field(default=128, ge=1)
    """Compaction rewrites small files into files of about this size."""


class ClmConfig(_Section):
    """The whole clm configuration."""

    paths: PathsConfig = PathsConfig()
    database: DatabaseConfig = DatabaseConfig()
    data: DataConfig
    ingest: IngestConfig = IngestConfig()
    """Streaming ingestion: the Kafka consumer (``ingest.kafka``)."""
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()
    drift: DriftConfig = DriftConfig()
    """Drift detectors and the retraining policy (documented field by field in ``clm_lib/drift/config.py``)."""
    deploy: DeployConfig = DeployConfig()
    """Canary / blue-green rollout, safety rules and rollback (documented in ``clm_lib/deploy/config.py``)."""
    serving: ServingConfig = ServingConfig()
    """Slot servers, the router and the serving backend (documented in ``clm_lib/serving/config.py``)."""
    server: ServerConfig = ServerConfig()
    lake: LakeConfig = LakeConfig()
    """Delta table compaction and vacuum retention."""
    alerts: AlertsConfig = AlertsConfig()
    """Alert channels, minimum severity, rate limit and retries (documented in ``clm_lib/alerts/config.py``)."""

    @field_validator("data")
    @classmethod
    def _unique_tasks(cls, v: DataConfig) -> DataConfig:
        if len(set(v.tasks)) != len(v.tasks):
            raise ValueError("tasks must be unique")
        return v

    @model_validator(mode="after")
    def _metric_tasks(self) -> ClmConfig:
        strays = [t for t in self.evaluation.metrics if t not in self.data.tasks]
        if strays:
            raise ValueError(
                f"evaluation.metrics names {', '.join(map(repr, strays))}, not in data.tasks "
                f"({', '.join(self.data.tasks)})"
            )
        return self

    @model_validator(mode="after")
    def _deploy_lease(self) -> ClmConfig:
        check_lease(self.deploy, self.serving)  # the deploy lock's lease outlasts every serving call under it
        return self

    _revision: int | None = PrivateAttr(default=None)

    @property
    def revision(self) -> int | None:
        """The configuration revision (``clm_lib/config_store.py``) this config is, None for the file alone."""
        return self._revision

    # --- resolved locations -------------------------------------------------------------
    @property
    def home(self) -> Path:
        return Path(self.paths.home).expanduser().resolve()

    def path(self, p: Path | str) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.home / p

    @property
    def landing_dir(self) -> Path:
        return self.path(self.paths.landing)

    @property
    def landing_uri(self) -> str:
        """The landing location as configured: ``s3://...``, or the local folder's path."""
        landing = self.paths.landing
        return landing if landing.startswith(("s3://", "s3a://")) else str(self.landing_dir)

    @property
    def lake_uri(self) -> str:
        uri = self.paths.lake
        return uri if "://" in uri else str(self.path(uri))

    @property
    def models_dir(self) -> Path:
        return self.path(self.paths.models)

    @property
    def logs_dir(self) -> Path:
        return self.path(self.paths.logs)

    @property
    def base_model_dir(self) -> Path:
        return self.path(self.model.base_path)

    # The real URLs, password included: pass them only to what connects, never to a message or a file.
    @property
    def database_url(self) -> str:
        url = self.database.url
        return (url.get_secret_value() if url else "") or f"sqlite:///{self.home / 'clm.db'}"

    @property
    def tracking_uri(self) -> str:
        uri = self.registry.tracking_uri
        return (uri.get_secret_value() if uri else "") or f"sqlite:///{self.home / 'mlflow.db'}"

    def config_hash(self) -> str:
        """Stable hash of the effective settings, recorded with every model for lineage.

        Secret fields enter it redacted, so rotating a password neither changes it nor can be read back from it."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Conventional variables that win over the file (the 12-factor names people already set).
WELL_KNOWN_ENV = {
    "CLM_HOME": ("paths", "home"),
    "CLM_DATA_URI": ("paths", "lake"),
    "CLM_DATABASE_URL": ("database", "url"),
    "MLFLOW_TRACKING_URI": ("registry", "tracking_uri"),
}


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for key, (section, name) in WELL_KNOWN_ENV.items():
        if environ.get(key):
            section_raw = raw.setdefault(section, {})
            if not isinstance(section_raw, dict):
                raise ConfigError(f"{section}: must be a mapping, got {type(section_raw).__name__}")
            section_raw[name] = environ[key]
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(parts[:-1])} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            # Not the parser's excerpt of the value: the value may be a secret URL.
            problem = getattr(exc, "problem", None) or "cannot parse"
            raise ConfigError(f"{key}: value is not valid YAML ({problem})") from None
    return raw


PROFILES = REPO_ROOT / "include" / "profiles"
PROFILE_FILE = "profile"
"""The file in a home that names its profile (written by ``clm init --profile``)."""


def profile_name(raw: dict[str, Any], environ: dict[str, str]) -> str | None:
    """The profile in force: ``$CLM_PROFILE``, else the one the home was initialised with, else None.

    The home remembers it so that every command and every Airflow task in it sees the same stores without anyone
    exporting anything; ``$CLM_PROFILE`` (``clm --profile``) wins for one command."""
    if environ.get("CLM_PROFILE"):
        return environ["CLM_PROFILE"]
    paths = raw.get("paths") if isinstance(raw.get("paths"), dict) else {}
    home = environ.get("CLM_HOME") or environ.get(f"{ENV_PREFIX}PATHS__HOME") or paths.get("home") or ".clm"
    marker = Path(str(home)).expanduser() / PROFILE_FILE
    try:
        return marker.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def profile_path(name: str) -> Path:
    """``include/profiles/<name>.yaml``, or ``name`` itself when it is a path to a YAML file."""
    if name.endswith((".yaml", ".yml")):
        return Path(name).expanduser()
    shipped = sorted(p.stem for p in PROFILES.glob("*.yaml"))
    if name not in shipped:
        raise ConfigError(f"unknown clm profile {name!r}: one of {', '.join(shipped)}, or a path to a .yaml file")
    return PROFILES / f"{name}.yaml"


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``what`` names the file in errors ("clm config", "clm profile")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {redact_text(str(exc))}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _read_profile(name: str) -> dict[str, Any]:
    path = profile_path(name)
    raw = _read_mapping(path, "clm profile")
    if "home" in (raw.get("paths") or {}):
        # The home is where a profile is remembered: a profile that moved it would lose itself.
        raise ConfigError(f"clm profile {path}: paths.home cannot be set by a profile (set CLM_HOME)")
    return raw


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {redact_text(repr(given))})"
        lines.append(f"{field}: {err['msg']}{shown}")
    return f"invalid clm config {source}:\n  " + "\n  ".join(lines)


# Variables that say which config or home to use; without one, clm runs only from the root of a checkout.
_LOCATING_ENV = ("CLM_CONFIG", "CLM_HOME", f"{ENV_PREFIX}PATHS__HOME")
NO_CONFIG = (
    "no clm config found: run inside a clm checkout (its root folder), set CLM_CONFIG and CLM_HOME, "
    'or eval "$(clm env)" there first'
)


def _in_checkout(folder: Path) -> bool:
    return (folder / "include" / "clm.yaml").is_file()


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> ClmConfig:
    """Load, override from the environment, and validate. Raises :class:`ConfigError`."""
    environ = dict(os.environ if environ is None else environ)
    if path is None and not any(environ.get(k) for k in _LOCATING_ENV) and not _in_checkout(Path.cwd()):
        # The shipped config puts home at ./.clm: anywhere else clm would create a stray, empty state folder.
        raise ConfigError(NO_CONFIG)
    path = Path(path or environ.get("CLM_CONFIG") or DEFAULT_CONFIG)
    raw = _read_mapping(path, "clm config")
    profile = profile_name(raw, environ)
    if profile:
        raw = _merge(raw, _read_profile(profile))
    raw = _apply_env_overrides(raw, environ)
    try:
        return ClmConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path) + (f" with profile {profile}" if profile else ""))) from None
