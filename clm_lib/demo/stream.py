"""The demo's continual-learning stream: support tickets of Halcyon's product lines, one task per line.

Each record is ``{"task", "prompt", "response"}``: a customer's ticket and the triage answer the support desk
gives it, ``"team: <team> | action: <action>"``. The answer is fully determined by the ticket (its product line
and its symptom), so exact-match accuracy is meaningful. The product lines and the wording of tickets live in
:mod:`clm_lib.modeling.corpus`, which also builds the demo base model's corpus from them (and says why plain
sequential fine-tuning forgets on this stream).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clm_lib.modeling.corpus import PRODUCT_LINES, TASKS, product_line, seeded_rng, ticket

Record = dict[str, str]
Format = Literal["jsonl", "csv", "parquet"]


def generate_task(task: str, n: int, seed: int, heldout: bool = False, new_wording: bool = False) -> list[Record]:
    """``n`` distinct tickets of one product line with their triage answers; the same for the same seed.

    ``heldout=True`` draws tickets for testing generalisation rather than recall (the continual-learning
    benchmark's): product names, small talk, customer names and cities that default tickets never use, so no
    held-out ticket is ever a training ticket. Symptom wordings stay those of default tickets: forgetting is
    measured on what the model could learn, not on how far a model this small generalises.

    ``new_wording=True`` (implies ``heldout``) says each symptom in words no training ticket and no warm-up text
    uses (``corpus.HELDOUT_WORDINGS``): the benchmark's held-out-wording accuracy, reported next to the
    held-out-name accuracy, of how well the model answers a known symptom said in new words.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    line = product_line(task)
    heldout = heldout or new_wording
    scope = ("new_wording",) if new_wording else ("heldout",) if heldout else ()
    rng = seeded_rng(seed, "task", task, *scope)
    records: list[Record] = []
    seen: set[str] = set()
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise ValueError(f"cannot draw {n} distinct {task} tickets; the templates allow fewer")
        intent = rng.choice(line.intents)
        prompt = ticket(line, intent, rng, heldout, new_wording)
        if prompt in seen:
            continue
        seen.add(prompt)
        records.append({"task": task, "prompt": prompt, "response": intent.response})
    return records


def intents(task: str) -> dict[str, str]:
    """Intent name -> triage answer of one product line (for docs and tests)."""
    return {i.name: i.response for i in product_line(task).intents}


def write_records(path: str | Path, records: Sequence[Record], fmt: Format) -> Path:
    """Write records as one file of ``fmt`` (``jsonl``, ``csv`` or ``parquet``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return path
    columns = {key: [str(rec.get(key, "")) for rec in records] for key in ("task", "prompt", "response")}
    table = pa.table(columns, schema=pa.schema([(k, pa.string()) for k in columns]))
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        raise ValueError(f"unknown format {fmt!r}; use jsonl, csv or parquet")
    return path


_ROTATION: tuple[Format, ...] = ("jsonl", "csv", "parquet")


def _plant_problems(
    task: str, records: list[Record], earlier: list[Record], bad: int, rng: random.Random
) -> tuple[list[Record], int]:
    """Insert planted bad records; returns the records and how many malformed JSON lines to add."""
    # Duplicates come twice per round, so every drop re-sends records of itself and of an earlier drop.
    kinds = ["duplicate", "empty_response", "duplicate", "unknown_task", "long_prompt", "malformed_json"]
    counts = dict.fromkeys(kinds, 0)
    for i in range(max(bad, len(kinds))):
        counts[kinds[i % len(kinds)]] += 1
    planted: list[Record] = []
    for _ in range(counts["empty_response"]):
        planted.append({**rng.choice(records), "response": ""})
    for _ in range(counts["unknown_task"]):
        door = ticket(PRODUCT_LINES["routers"], PRODUCT_LINES["routers"].intents[0], rng)
        planted.append(
            {"task": "smart_locks", "prompt": door.replace("router", "door lock"), "response": "team: locks"}
        )
    for _ in range(counts["long_prompt"]):
        base = rng.choice(records)
        log = " ".join(f"[{i:04d}] kernel: link state changed" for i in range(80))
        planted.append({**base, "prompt": f"{base['prompt']} Here is the full log: {log}"})
    for i in range(counts["duplicate"]):
        # Alternate between re-sent records of this drop and of earlier drops (cross-file dedupe).
        pool = earlier if i % 2 and earlier else records
        planted.append(dict(rng.choice(pool)))
    out = list(records)
    for rec in planted:
        out.insert(rng.randrange(len(out) + 1), rec)
    return out, counts["malformed_json"]


def write_demo_drops(
    out_dir: str | Path,
    tasks: Iterable[str] | None = None,
    n_per_task: int = 800,
    seed: int = 0,
    bad_fraction: float = 0.03,
) -> list[Path]:
    """Write one drop file per task, rotating jsonl, csv and parquet, in arrival order.

    About ``bad_fraction`` of each file is planted problems, so the demo shows quarantine and dedupe at work:
    empty responses, an unknown task name, over-long prompts (over 2,000 characters), exact duplicates of earlier
    records (of this file and of earlier files), and, in jsonl files, malformed JSON lines.
    """
    out_dir = Path(out_dir)
    task_list = list(tasks) if tasks is not None else list(TASKS)
    paths: list[Path] = []
    earlier: list[Record] = []
    for index, task in enumerate(task_list):
        fmt = _ROTATION[index % len(_ROTATION)]
        rng = seeded_rng(seed, "drop", task)
        clean = generate_task(task, n_per_task, seed)
        records, malformed = _plant_problems(task, clean, earlier, round(n_per_task * bad_fraction), rng)
        path = write_records(out_dir / f"{index + 1:02d}_{task}.{fmt}", records, fmt)
        if fmt == "jsonl":
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            for _ in range(malformed):
                broken = json.dumps(rng.choice(clean), ensure_ascii=False)[:-25] + "\n"
                lines.insert(rng.randrange(len(lines) + 1), broken)
            path.write_text("".join(lines), encoding="utf-8")
        earlier.extend(clean)
        paths.append(path)
    return paths
