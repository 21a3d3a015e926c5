"""``clm adapt-domain``: a domain-adapted base from a folder of unlabelled text (``clm_lib.training.domain``)::

    clm adapt-domain --text docs/ [--out DIR] [--reason "..."] [--original held.jsonl --new new.jsonl --adapter DIR]

Writes the adapted base (a ``from_pretrained`` folder with ``clm_domain.json``) and, given held-out records, the
before/after comparison (``clm_domain_comparison.json``) next to it. The base in use does not change: point
``model.base_path`` at the new folder (``clm config set``) once the comparison says it is worth it. Settings:
``training.domain`` in the clm config (``CLM__TRAINING__DOMAIN__...`` overrides, ``clm config set``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from clm_lib.training.train_cli import _logging

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("adapt-domain")
@click.option(
    "--text",
    "text_dir",
    required=True,
    type=click.Path(path_type=Path),
    help='Folder of in-domain text: .txt and .md files (one document each), .jsonl files (a "text" field a line).',
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where the adapted base goes (a new or empty folder; default: <models>/domain/base-<UTC time>).",
)
@click.option("--reason", default="", help="Why (kept in the adapted base's record).")
@click.option("--base", "base_dir", type=click.Path(path_type=Path), help="Base to adapt (default: model.base_path).")
@click.option("--original", "original_path", type=_FILE, help="Held-out records of the tasks the model knows.")
@click.option("--new", "new_path", type=_FILE, help="Held-out records of the new domain's tasks.")
@click.option(
    "--adapter",
    "adapter_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Task adapter to score both bases with (e.g. the champion's); default: the bases alone.",
)
def adapt_domain_cmd(
    text_dir: Path,
    out: Path | None,
    reason: str,
    base_dir: Path | None,
    original_path: Path | None,
    new_path: Path | None,
    adapter_dir: Path | None,
) -> None:
    """Continue pretraining the base on raw in-domain text (a LoRA adapter, merged) into a new base folder."""
    from clm_lib.config import load_config
    from clm_lib.config_store import live_config
    from clm_lib.errors import TrainingError
    from clm_lib.evaluation.domain_comparison import DOMAIN_DIR
    from clm_lib.training.domain import RECORD_FILE, adapt_domain
    from clm_lib.training.domain_text import read_text_folder
    from clm_lib.training.record_files import read_records

    _logging(0)
    # training.domain may be changed at run time (`clm config set`): the live revision's values, as the DAGs read.
    cfg = live_config(load_config())
    # Checked before the base is loaded or built: bad input fails in a second, naming the problem.
    read_text_folder(text_dir, max_file_bytes=cfg.training.domain.max_file_bytes)
    if base_dir is not None and not (base_dir / "config.json").is_file():
        raise TrainingError(f"--base {base_dir}: no model there (config.json missing)")
    original = read_records(original_path, "original") if original_path else None
    new = read_records(new_path, "new") if new_path else None
    out = out or cfg.models_dir / DOMAIN_DIR / f"base-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    t0 = time.monotonic()
    result = adapt_domain(cfg, text_dir, out, base_dir=base_dir, reason=reason)
    click.echo(f"trained {result.steps} steps on {result.train_chunks} chunks in {time.monotonic() - t0:.1f} s")
    if result.heldout_loss_before is not None:
        click.echo(
            f"  held-out text loss {result.heldout_loss_before:.4f} -> {result.heldout_loss_after:.4f} "
            f"({result.heldout_chunks} chunks)"
        )
    click.echo(f"  adapted base  {result.out_dir}")
    click.echo(f"  record        {result.out_dir / RECORD_FILE}")
    if original is not None or new is not None:
        from clm_lib.evaluation.domain_comparison import compare_bases, save_comparison

        comparison = compare_bases(
            result.base_dir,
            result.out_dir,
            original=original,
            new=new,
            adapter_dir=adapter_dir,
            max_examples_per_task=cfg.evaluation.max_examples_per_task,
            batch_size=cfg.evaluation.batch_size,
            max_length=cfg.model.max_length,
        )
        for t in comparison.tasks:
            click.echo(
                f"  {t.group:<8} {t.task:<20} {t.accuracy_before:6.1f} -> {t.accuracy_after:6.1f} "
                f"(loss {t.loss_before:.3f} -> {t.loss_after:.3f})"
            )
        click.echo(f"  comparison    {save_comparison(comparison, result.out_dir)}")
    click.echo(f"use it: clm config set model.base_path={result.out_dir} --reason ...")
