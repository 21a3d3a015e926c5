"""A user's task stream for the forgetting benchmark: one folder, one train/test file pair per task.

Layout (``NN`` orders the tasks; ``EXT`` is jsonl, ndjson, json, csv or parquet; the two files may differ)::

    01_first_task.train.jsonl   01_first_task.test.jsonl
    02_second_task.train.csv    02_second_task.test.csv
    ...

Each record has ``prompt`` and ``response``; ``task`` is optional and, when present, must be the file's task.
Files are read by ingestion's readers (``clm_lib.data.readers``), so a file reads here as it would land; ``.json``
and ``.ndjson`` are JSON lines, as ``clm train --data`` takes them. Any other file in the folder (a README, the
script that built it) is left alone unless its name looks like a task file, which is then checked.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from continual_runner import Stream, records_table

from clm_lib.data.readers import read_parquet, read_text
from clm_lib.errors import ClmError

SPLITS = ("train", "test")
TEXT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
EXTENSIONS = (*TEXT_FORMATS, ".parquet")
_NAME = re.compile(r"^(?P<nn>\d+)_(?P<task>.+)\.(?P<split>train|test)(?P<ext>\.[^.]+)$")
_LOOKS_LIKE_TASK_FILE = re.compile(r"\.(train|test)\.[^.]+$")
_NO_TASK = re.compile(r"missing column 'task'( \((header|file) has: [^)]*\))?")
"""What ingestion's readers say of a record without a task, which a stream's records may be."""


class StreamError(ClmError):
    """A stream folder that cannot be used as it is; the message names the file at fault."""


@dataclass(frozen=True)
class TaskFiles:
    number: int
    task: str
    train: Path
    test: Path


def scan(folder: str | Path) -> list[TaskFiles]:
    """The folder's tasks in arrival order, their layout checked (contents are read by :func:`read_task_file`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StreamError(f"--stream {folder}: not a folder")
    found: dict[tuple[int, str], dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not _LOOKS_LIKE_TASK_FILE.search(path.name):
            continue
        m = _NAME.match(path.name)
        if m is None:
            raise StreamError(f"{path}: a task file is named NN_task.train.EXT or NN_task.test.EXT")
        if m["ext"].lower() not in EXTENSIONS:
            raise StreamError(f"{path}: unknown extension {m['ext']!r} (use {', '.join(EXTENSIONS)})")
        if not m["task"].isidentifier():
            raise StreamError(f"{path}: task name {m['task']!r} is not a valid identifier (letters, digits, _)")
        pair = found.setdefault((int(m["nn"]), m["task"]), {})
        if m["split"] in pair:
            raise StreamError(f"{path}: task {m['task']!r} already has a {m['split']} file, {pair[m['split']].name}")
        pair[m["split"]] = path
    if not found:
        raise StreamError(f"--stream {folder}: no task files (NN_task.train.EXT and NN_task.test.EXT)")
    by_number: dict[int, str] = {}
    by_task: dict[str, int] = {}
    out = []
    for (number, task), pair in sorted(found.items()):
        named = pair.get("train") or pair["test"]
        if number in by_number:
            raise StreamError(f"{named}: number {number:02d} is also task {by_number[number]!r}'s; NN orders tasks")
        if task in by_task:
            raise StreamError(f"{named}: task {task!r} is also number {by_task[task]:02d}; each task comes once")
        for split in SPLITS:
            if split not in pair:
                raise StreamError(
                    f"{named}: task {task!r} has no {split} file ({named.name.split('.')[0]}.{split}.EXT)"
                )
        by_number[number], by_task[task] = task, number
        out.append(TaskFiles(number, task, pair["train"], pair["test"]))
    if len(out) < 2:
        raise StreamError(f"--stream {folder}: one task ({out[0].task}); forgetting needs a second one after it")
    return out


def read_task_file(path: Path, task: str) -> list[dict[str, str]]:
    """The records of one file, each ``{"task", "prompt", "response"}``; any bad record is an error naming its line."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            result = read_parquet(path, name=str(path))
        else:
            result = read_text(path.read_bytes(), TEXT_FORMATS[suffix], name=str(path))
    except (OSError, ClmError) as exc:
        raise StreamError(f"{path}: cannot read it: {exc}") from None
    where = "row" if suffix == ".parquet" else "line"
    records = []
    for row in result.table.to_pylist():
        at = f"{path} {where} {row['line']}"
        # A stream's records may leave the task out (the file name says it): not a problem here.
        detail = _NO_TASK.sub("", row["detail"] or "").strip("; ")
        problem = row["problem"] if detail else None
        for field in ("prompt", "response"):
            if row[field] is None and problem in (None, "missing_column"):
                raise StreamError(f"{at}: no {field}")
        if problem:
            raise StreamError(f"{at}: {detail}")
        for field in ("prompt", "response"):
            if not row[field].strip():
                raise StreamError(f"{at}: no {field} (it is blank)")
        if row["task"] is not None and row["task"] != task:
            raise StreamError(f"{at}: task {row['task']!r} is not the file's task {task!r}")
        records.append({"task": task, "prompt": row["prompt"], "response": row["response"]})
    if not records:
        raise StreamError(f"{path}: no records")
    return records


def content_hash(files: list[TaskFiles]) -> str:
    """sha256 over every task file's name and bytes, in arrival order: the stream a result was measured on."""
    digest = hashlib.sha256()
    for tf in files:
        for path in (tf.train, tf.test):
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _cap(records: list[dict[str, str]], limit: int | None, rng: random.Random) -> list[dict[str, str]]:
    if limit is None or len(records) <= limit:
        return records
    keep = sorted(rng.sample(range(len(records)), limit))  # file order kept: only which records, not their order
    return [records[i] for i in keep]


def load_stream(
    folder: str | Path,
    *,
    tasks: int | None = None,
    n_train: int | None = None,
    n_eval: int | None = None,
    seed: int = 0,
) -> tuple[Stream, dict]:
    """The stream in ``folder`` (its first ``tasks`` tasks), each split capped to a seeded subsample if asked,
    and what a result should record about it (path, content hash, files, rows per task)."""
    every = scan(folder)
    files = every[:tasks]
    train, held = {}, {}
    for tf in files:
        rng = random.Random(f"{seed}/{tf.task}")
        train[tf.task] = records_table(_cap(read_task_file(tf.train, tf.task), n_train, rng))
        held[tf.task] = records_table(_cap(read_task_file(tf.test, tf.task), n_eval, rng))
    names = [tf.task for tf in files]
    # Allowed (a user may mean it) but worth seeing: such a test example measures recall, not generalisation.
    leaked = {
        t: len(set(held[t].column("prompt").to_pylist()) & set(train[t].column("prompt").to_pylist())) for t in names
    }
    for task, n in leaked.items():
        if n:
            print(f"warning: {n} test prompt(s) of task {task!r} are also training prompts", flush=True)
    info = {
        "path": str(Path(folder).resolve()),
        "sha256": content_hash(every),
        "files": [p.name for tf in files for p in (tf.train, tf.test)],
        "train_rows": {t: train[t].num_rows for t in names},
        "eval_rows": {t: held[t].num_rows for t in names},
        "test_prompts_in_train": leaked,
    }
    return Stream(tasks=names, train=train, eval=held), info
