"""Measure forgetting on the demo stream: sequential fine-tuning against replay, with the default config.

Builds the demo base model in a temporary folder, generates the five-task stream, and for each strategy trains
one update per task (new data = the task's training split; replay = the buffer of earlier tasks kept by
``select_buffer``), scoring every task seen so far after every update. Prints the accuracy matrix R, average
accuracy (AA), backward transfer (BWT) and the wall time per update, and writes them as JSON.

    python bench/continual_quick.py                      # include/clm.yaml
    python bench/continual_quick.py --config include/tiny.yaml --modes replay
    CLM__TRAINING__MAX_STEPS=200 python bench/continual_quick.py   # any config override
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# Before transformers is imported: no per-load progress bars, no DeepSpeed accelerator probe warning.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import pyarrow as pa

from clm_lib.config import load_config
from clm_lib.demo.stream import generate_task
from clm_lib.evaluation.matrix import build_matrix
from clm_lib.evaluation.metrics import score_tasks
from clm_lib.modeling.build import ensure_base_model
from clm_lib.modeling.load import load_model
from clm_lib.training.recipe import train_update
from clm_lib.training.strategies.replay import select_buffer

MODES = {"sequential": False, "replay": True}


def make_splits(tasks: list[str], n_per_task: int, eval_fraction: float, seed: int) -> dict[str, dict[str, pa.Table]]:
    """Task -> {"train", "eval"} tables, split by content hash like ingestion does."""
    splits = {}
    for task in tasks:
        rows = {"train": [], "eval": []}
        for rec in generate_task(task, n_per_task, seed):
            digest = hashlib.sha256(f"{rec['task']}\0{rec['prompt']}\0{rec['response']}".encode()).hexdigest()
            split = "eval" if int(digest[:8], 16) / 16**8 < eval_fraction else "train"
            rows[split].append({"id": digest[:32], **rec})
        splits[task] = {name: pa.Table.from_pylist(r) for name, r in rows.items()}
    return splits


def run_mode(cfg, splits, tasks: list[str], out_dir: Path) -> dict:
    buffer: pa.Table | None = None
    parent = None
    updates, times = [], []
    for i, task in enumerate(tasks):
        cpu = time.process_time()
        result = train_update(
            cfg,
            new_data=splits[task]["train"],
            replay_data=buffer,
            parent_adapter_dir=parent,
            output_dir=out_dir / f"update-{i}",
            run_id=f"{task}-{i}",
        )
        cpu = time.process_time() - cpu
        start = time.monotonic()
        model, tokenizer = load_model(cfg.base_model_dir, result.adapter_dir)
        seen = tasks[: i + 1]
        eval_data = pa.concat_tables([splits[t]["eval"] for t in seen])
        scores = score_tasks(
            model,
            tokenizer,
            eval_data,
            max_examples_per_task=cfg.evaluation.max_examples_per_task,
            batch_size=cfg.evaluation.batch_size,
            max_length=cfg.model.max_length,
        )
        eval_seconds = time.monotonic() - start
        updates.append((seen, {t: s.accuracy for t, s in scores.items()}))
        times.append(
            {
                "train_s": result.wall_seconds,
                "train_cpu_s": round(cpu, 1),
                "eval_s": round(eval_seconds, 2),
                "loss": result.final_loss,
            }
        )
        print(
            f"  update {i} ({task}): train {result.wall_seconds:5.1f} s (cpu {cpu:5.1f} s), "
            f"eval {eval_seconds:4.1f} s, "
            f"loss {result.final_loss:.3f}, replay share {result.replay_fraction:.2f} | "
            + " ".join(f"{t}={s.accuracy:5.1f}" for t, s in scores.items()),
            flush=True,
        )
        if cfg.training.replay.enabled:
            buffer = select_buffer(buffer, splits[task]["train"], cfg.training.replay.buffer_size, cfg.training.seed)
        parent = result.adapter_dir
    matrix = build_matrix(updates)
    return {
        "tasks": matrix.tasks,
        "R": matrix.rows,
        "AA": round(matrix.average_accuracy, 2),
        "BWT": None if matrix.backward_transfer is None else round(matrix.backward_transfer, 2),
        "forgetting": matrix.forgetting(),
        "updates": times,
    }


def print_matrix(name: str, res: dict) -> None:
    print(f"\n{name}: AA {res['AA']:.1f}  BWT {res['BWT']}")
    print("R (row = after update i, column = task)".ljust(40) + "".join(f"{t[:12]:>13}" for t in res["tasks"]))
    for i, row in enumerate(res["R"]):
        cells = "".join(f"{'':>13}" if v is None else f"{v:13.1f}" for v in row)
        print(f"  after update {i}".ljust(40) + cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="clm YAML (default include/clm.yaml)")
    parser.add_argument("--modes", default="sequential,replay", help="comma list of: " + ", ".join(MODES))
    parser.add_argument("--n-per-task", type=int, default=800, help="records generated per task")
    parser.add_argument("--seed", type=int, default=0, help="stream seed")
    parser.add_argument("--out", default="bench/results/continual_quick.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="clm-bench-") as home:
        environ = {**os.environ, "CLM_HOME": home}
        os.environ["CLM_HOME"] = home
        base_cfg = load_config(args.config, environ=environ)
        tasks = list(base_cfg.data.tasks)
        start = time.monotonic()
        ensure_base_model(base_cfg)
        build_s = round(time.monotonic() - start, 1)
        print(f"base model built in {build_s} s", flush=True)
        splits = make_splits(tasks, args.n_per_task, base_cfg.data.eval_fraction, args.seed)
        report = {
            "config": args.config or "include/clm.yaml",
            "n_per_task": args.n_per_task,
            "train_rows": {t: s["train"].num_rows for t, s in splits.items()},
            "eval_rows": {t: s["eval"].num_rows for t, s in splits.items()},
            "base_build_s": build_s,
            "training": base_cfg.training.model_dump(mode="json"),
            "architecture": base_cfg.model.architecture,
            "modes": {},
        }
        for mode in args.modes.split(","):
            print(f"\n== {mode}", flush=True)
            cfg = base_cfg.model_copy(deep=True)
            cfg.training.replay.enabled = MODES[mode]
            report["modes"][mode] = run_mode(cfg, splits, tasks, Path(home) / mode)
            print_matrix(mode, report["modes"][mode])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
