"""A training spec: one continual update, written down so that a pod can train it (``training.placement:
kubernetes``).

Three steps, each in its own process:

1. :func:`prepare_spec` (the Airflow task before the pod): the same :func:`~clm_lib.training.update.start_update`
   as local training (plan, strategies' ``before_update``, the ``running`` row), then it exports exactly the rows
   to train on (the curated rows between the two Delta versions, the replay buffer at the version read) to Parquet,
   copies the parent adapter and the base model, and writes ``spec.json``, all under
   ``<work>/<run id>/`` (``training.kubernetes.work_uri``, default ``<paths.lake>/_training``);
2. :func:`run_spec` (``clm train --spec URI``, in the pod): reads the spec, fetches its inputs, trains with the same
   recipe (:func:`~clm_lib.training.recipe.train_update`), mirrors its checkpoints to ``checkpoint_uri`` (a retried
   pod resumes from them) and writes the adapter, ``train_summary.json`` and ``result.json`` to ``output_uri``;
3. :func:`collect_spec` (the task after the pod): fetches the adapter into the run's output folder, lets the
   strategies write back their state (``after_update``: the replay buffer) and records the run ``succeeded``,
   as :func:`~clm_lib.training.update.run_update` does.

The pod reads record files, not Delta tables: it needs no lake or database credentials, only the exchange
location's. The spec carries the config sections the recipe reads (``data``, ``model``, ``training``), never a
secret: those sections hold none (``database`` and ``registry`` are left out).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from clm_lib.errors import TrainingError
from clm_lib.training import exchange

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.db.models import TrainingRun
    from clm_lib.training.context import TrainResult
    from clm_lib.training.update import StartedUpdate

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
"""Written last by the pod: its presence says the outputs are complete."""
CONFIG_SECTIONS = ("data", "model", "training")
"""The config the pod trains with: what the recipe reads, and no secret."""


class TrainingSpec(BaseModel):
    """Everything a pod needs to train one update the way local training would."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """The ``training_runs`` row the task recorded as ``running``."""
    train: bool = True
    """False when the run trains nothing (a task removal): the pod exits at once."""
    config: dict[str, Any] = {}
    """The config sections ``data``, ``model`` and ``training`` (no secrets)."""
    config_hash: str | None = None
    config_revision: int | None = None
    curated_uri: str | None = None
    """The curated Delta table the new rows come from (for lineage: the pod reads ``new_records_uri``)."""
    curated_version: int | None = None
    previous_curated_version: int | None = None
    """The new rows are those between this version and ``curated_version``."""
    replay_uri: str | None = None
    replay_version: int | None = None
    """The replay buffer's version read (``None``: the buffer did not exist)."""
    new_records_uri: str | None = None
    """Parquet of exactly the new rows to train on."""
    replay_records_uri: str | None = None
    """Parquet of the replay buffer at ``replay_version``."""
    parent_version: str | None = None
    parent_adapter_uri: str | None = None
    """The champion's adapter this update continues; ``None``: a fresh adapter."""
    base_model_uri: str | None = None
    output_uri: str | None = None
    checkpoint_uri: str | None = None


def work_uri(cfg: ClmConfig) -> str:
    return cfg.training.kubernetes.work_uri or exchange.join(cfg.lake_uri, "_training")


def spec_uri(cfg: ClmConfig, run_id: str) -> str:
    return exchange.join(work_uri(cfg), run_id, SPEC_FILE)


def write_spec(uri: str, spec: TrainingSpec) -> None:
    exchange.write_bytes(uri, spec.model_dump_json(indent=2).encode())


def read_spec(uri: str) -> TrainingSpec:
    try:
        raw = exchange.read_bytes(uri)
    except (OSError, KeyError) as exc:
        raise TrainingError(f"--spec {uri}: cannot read it: {exc}") from None
    return TrainingSpec.model_validate_json(raw)


# --- 1. the task before the pod ------------------------------------------------------------------------------------


def prepare_spec(cfg: ClmConfig, started: StartedUpdate) -> str:
    """Export what ``started`` trains on and write its spec; returns the spec's URI. Marks the run failed on error."""
    from clm_lib.data import lake
    from clm_lib.training.update import _parent_adapter, fail_update

    root = exchange.join(work_uri(cfg), started.run_id)
    try:
        parent = _parent_adapter(cfg, started.parent_version)
        spec = TrainingSpec(
            run_id=started.run_id,
            config={k: v for k, v in cfg.model_dump(mode="json").items() if k in CONFIG_SECTIONS},
            config_hash=cfg.config_hash(),
            config_revision=cfg.revision,
            curated_uri=lake.table_uri(cfg, "curated"),
            curated_version=_run_field(cfg, started.run_id, "curated_version"),
            previous_curated_version=_run_field(cfg, started.run_id, "previous_curated_version"),
            replay_uri=lake.table_uri(cfg, "replay"),
            replay_version=started.update.read_versions.get("replay"),
            new_records_uri=exchange.join(root, "inputs", "new.parquet"),
            replay_records_uri=exchange.join(root, "inputs", "replay.parquet"),
            parent_version=started.parent_version,
            parent_adapter_uri=exchange.join(root, "inputs", "parent_adapter") if parent else None,
            base_model_uri=_publish_base_model(cfg),
            output_uri=exchange.join(root, "output"),
            checkpoint_uri=exchange.join(root, "checkpoints"),
        )
        # The weights replay trains with were computed from clm's database just now; the pod cannot read it.
        replay = next((s for s in started.strategies if s.name == "replay"), None)
        if replay is not None:
            spec.config["training"]["replay"]["task_weights"] = dict(replay.task_weights)
        _write_parquet(started.new, spec.new_records_uri)
        _write_parquet(started.replay, spec.replay_records_uri)
        if parent:
            exchange.upload_dir(parent, spec.parent_adapter_uri)
        uri = exchange.join(root, SPEC_FILE)
        write_spec(uri, spec)
    except Exception as exc:
        fail_update(cfg, started.run_id, exc)
        raise
    log.info("training %s: spec written to %s", started.run_id, uri)
    return uri


def _run_field(cfg: ClmConfig, run_id: str, name: str) -> Any:
    from clm_lib.db import session_scope
    from clm_lib.db.models import TrainingRun

    with session_scope(cfg.database_url) as s:
        return getattr(s.get(TrainingRun, run_id), name)


def _write_parquet(table, uri: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    exchange.write_bytes(uri, sink.getvalue().to_pybytes())


def _publish_base_model(cfg: ClmConfig) -> str:
    """The base model's copy in the exchange location, uploaded once per model (keyed by its files and settings)."""
    from clm_lib.modeling.build import ensure_base_model

    base = ensure_base_model(cfg)
    files = sorted((str(p.relative_to(base)), p.stat().st_size) for p in base.rglob("*") if p.is_file())
    key = hashlib.sha256(json.dumps([files, cfg.model.model_dump(mode="json")], sort_keys=True).encode())
    uri = exchange.join(work_uri(cfg), "base-models", key.hexdigest()[:16])
    if not exchange.exists(exchange.join(uri, "config.json")):
        exchange.upload_dir(base, uri, last=["config.json"])  # config.json last: a model is complete once it is there
    return uri


# --- 2. the pod --------------------------------------------------------------------------------------------------


def run_spec(uri: str, *, home: Path | None = None, rank: int = 0) -> TrainResult | None:
    """Train the update ``uri`` describes (``clm train --spec``). Returns None when there was nothing left to do."""
    from clm_lib.config import ClmConfig
    from clm_lib.training.recipe import SUMMARY_FILE, train_update
    from clm_lib.training.record_files import read_records

    spec = read_spec(uri)
    if not spec.train:
        log.info("run %s trains nothing (spec says train: false)", spec.run_id)
        return None
    if exchange.exists(exchange.join(spec.output_uri, RESULT_FILE)):
        log.info("run %s was trained already: %s holds its result", spec.run_id, spec.output_uri)
        return None
    # Every pod of a run sees the same CLM_HOME (the template's), so the local paths below, which enter the
    # checkpoint's fingerprint, match between a killed pod and its retry.
    home = Path(home or os.environ.get("CLM_HOME") or Path(tempfile.gettempdir()) / "clm").resolve()
    local = home / "specs" / spec.run_id
    out = local / "out"
    ready = local / ".inputs-ready"
    if rank == 0:
        exchange.download_dir(spec.base_model_uri, local / "base")
        if spec.parent_adapter_uri:
            exchange.download_dir(spec.parent_adapter_uri, local / "parent_adapter")
        for name, src in (("new", spec.new_records_uri), ("replay", spec.replay_records_uri)):
            (local / "inputs").mkdir(parents=True, exist_ok=True)
            (local / "inputs" / f"{name}.parquet").write_bytes(exchange.read_bytes(src))
        exchange.download_dir(spec.checkpoint_uri, out / "checkpoints")  # a retried pod resumes from these
        ready.touch()
    else:
        # Ranks of one pod share its disk: rank 0 fetches, the others wait for it.
        while not ready.exists():
            time.sleep(1)
    config = json.loads(json.dumps(spec.config))
    config["model"] = {**config["model"], "base_path": str(local / "base"), "build_if_missing": False}
    cfg = ClmConfig.model_validate({**config, "paths": {"home": str(home)}})
    result = train_update(
        cfg,
        new_data=read_records(local / "inputs" / "new.parquet", "new"),
        replay_data=read_records(local / "inputs" / "replay.parquet", "replay"),
        parent_adapter_dir=local / "parent_adapter" if spec.parent_adapter_uri else None,
        output_dir=out,
        run_id=spec.run_id,
        on_checkpoint=_mirror_checkpoints(spec.checkpoint_uri),
    )
    if rank == 0:
        exchange.upload_dir(out / "adapter", exchange.join(spec.output_uri, "adapter"))
        exchange.write_bytes(exchange.join(spec.output_uri, SUMMARY_FILE), (out / SUMMARY_FILE).read_bytes())
        payload = {**asdict(result), "adapter_dir": "adapter"}
        exchange.write_bytes(exchange.join(spec.output_uri, RESULT_FILE), json.dumps(payload, default=str).encode())
    return result


def _mirror_checkpoints(uri: str):
    """Called after each checkpoint: copy it to the spec's checkpoint location, then drop older copies there.

    Before training goes on, so a pod killed later resumes from it. The trainer state file goes last: a copy cut
    short is not a checkpoint (``latest_checkpoint`` skips a folder without it)."""
    from clm_lib.training.loop import STATE_FILE

    def copy(checkpoint: Path) -> None:
        exchange.upload_dir(checkpoint, exchange.join(uri, checkpoint.name), last=[STATE_FILE])
        for old in {rel.split("/", 1)[0] for rel in exchange.list_dir(uri)} - {checkpoint.name}:
            exchange.remove_dir(exchange.join(uri, old))
        log.info("checkpoint %s copied to %s", checkpoint.name, uri)

    return copy


# --- 3. the task after the pod --------------------------------------------------------------------------------------


def collect_spec(cfg: ClmConfig, uri: str) -> TrainingRun | str:
    """Record the pod's update as local training would: adapter into the run's output folder, the strategies'
    ``after_update``, the row ``succeeded``. Returns the stored run (the run id for a spec that trained nothing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clm_lib.training.context import TrainResult, UpdateContext
    from clm_lib.training.recipe import SUMMARY_FILE
    from clm_lib.training.strategies import build_strategies
    from clm_lib.training.update import StartedUpdate, after_update, fail_update, succeed_update

    spec = read_spec(uri)
    if not spec.train:
        return spec.run_id
    output_dir = cfg.models_dir / "runs" / spec.run_id
    try:
        result_uri = exchange.join(spec.output_uri, RESULT_FILE)
        if not exchange.exists(result_uri):
            raise TrainingError(f"run {spec.run_id}: the pod left no result at {result_uri}")
        payload = json.loads(exchange.read_bytes(result_uri))
        exchange.download_dir(exchange.join(spec.output_uri, "adapter"), output_dir / "adapter")
        (output_dir / SUMMARY_FILE).write_bytes(exchange.read_bytes(exchange.join(spec.output_uri, SUMMARY_FILE)))
        result = TrainResult(**{**payload, "adapter_dir": output_dir / "adapter"})
        # Exactly the rows exported before the pod, as run_update hands them to after_update.
        new = pq.read_table(pa.BufferReader(exchange.read_bytes(spec.new_records_uri)))
        # The buffer version the pod trained on, read again: after_update refills from it.
        update = UpdateContext(cfg=cfg, run_id=spec.run_id, new=new, pinned_versions={"replay": spec.replay_version})
        strategies = build_strategies(cfg)
        for strategy in strategies:
            strategy.before_update(update)
        started = StartedUpdate(spec.run_id, update, strategies, new, new.slice(0, 0), spec.parent_version, output_dir)
        records = after_update(started, result)
    except Exception as exc:
        fail_update(cfg, spec.run_id, exc)
        raise
    return succeed_update(cfg, spec.run_id, result, records)
