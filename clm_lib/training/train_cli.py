"""``clm train``: one continual update from record files, in-process or under the ``deepspeed`` launcher.

The same recipe the Airflow task runs (``clm_lib.training.recipe.train_update``), for a GPU pod or by hand::

    clm train --new new.parquet [--replay buffer.parquet] [--parent-adapter DIR] --out DIR
    clm train --spec s3://bucket/clm/_training/<run id>/spec.json     # a trainer pod (clm_lib/training/spec.py)
    deepspeed --no_local_rank --num_gpus N $(which clm) train --new ... --out DIR --deepspeed zero2.json

(``--no_local_rank``: the launcher would otherwise put ``--local_rank`` before ``train``; every rank reads its
rank from the environment.)

Run it again with the same arguments after it was killed and it resumes from its newest checkpoint in
``DIR/checkpoints`` (``training.checkpoint_every``); once finished, it trains no more. Settings come from the clm
config (``clm --config``, ``CLM__TRAINING__...`` overrides).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from clm_lib.errors import TrainingError
from clm_lib.training.record_files import read_records

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _logging(rank: int) -> None:
    """Progress of clm's own loggers on stderr, once per process (an embedding process keeps its own setup)."""
    clm_logger = logging.getLogger("clm_lib")
    if logging.getLogger().handlers or clm_logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s"))
    clm_logger.addHandler(handler)
    clm_logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


@click.command("train")
@click.option(
    "--spec",
    "spec_uri",
    help="A training spec (folder path or s3:// URI of spec.json): inputs, outputs and settings all come from it; "
    "the other options are not used.",
)
@click.option("--new", "new_path", type=_FILE, help="This update's records (Parquet, JSONL or CSV).")
@click.option("--replay", "replay_path", type=_FILE, help="Replay buffer records mixed in by the replay strategy.")
@click.option(
    "--parent-adapter",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Adapter folder to continue (the champion's); default: a fresh adapter.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: adapter/, train_summary.json, checkpoints/ (resumed from when present).",
)
@click.option(
    "--deepspeed",
    "deepspeed_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Train under DeepSpeed with this config (e.g. include/deepspeed/zero2.json); wins over training.deepspeed.",
)
@click.option("--run-id", help="Name of the run in its summary (default: the --out folder's name).")
def train(
    spec_uri: str | None,
    new_path: Path | None,
    replay_path: Path | None,
    parent_adapter: Path | None,
    out: Path | None,
    deepspeed_config: Path | None,
    run_id: str | None,
) -> None:
    """Train one update from files and write the adapter to --out (resumes a killed run of the same --out)."""
    import os

    from clm_lib.config import load_config

    rank = int(os.environ.get("RANK", "0"))
    _logging(rank)
    if spec_uri:
        _train_spec(spec_uri, rank)
        return
    if new_path is None or out is None:
        raise click.UsageError("give --spec, or --new and --out")
    cfg = load_config()
    if deepspeed_config is not None:
        if not deepspeed_config.expanduser().is_file():
            raise TrainingError(f"--deepspeed {deepspeed_config}: no such file")
        cfg.training.deepspeed = deepspeed_config.expanduser().resolve()
    new = read_records(new_path, "new")
    replay = read_records(replay_path, "replay") if replay_path else None
    out = out.expanduser().resolve()

    from clm_lib.training.recipe import SUMMARY_FILE, train_update

    t0 = time.monotonic()
    result = train_update(
        cfg,
        new_data=new,
        replay_data=replay,
        parent_adapter_dir=parent_adapter.expanduser().resolve() if parent_adapter else None,
        output_dir=out,
        run_id=run_id or out.name,
    )
    if rank == 0:
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        click.echo(f"trained {result.steps} steps in {time.monotonic() - t0:.1f} s, final loss {loss}")
        click.echo(f"  adapter  {result.adapter_dir}")
        click.echo(f"  summary  {out / SUMMARY_FILE}")


def _train_spec(uri: str, rank: int) -> None:
    """Config and files from the spec, not from this host: a trainer pod has neither clm's config nor its stores."""
    from clm_lib.training.spec import run_spec

    t0 = time.monotonic()
    result = run_spec(uri, rank=rank)
    if rank != 0:
        return
    if result is None:
        click.echo(f"{uri}: nothing to train")
        return
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    click.echo(f"trained {result.steps} steps in {time.monotonic() - t0:.1f} s, final loss {loss}")
