"""Ingestion speed: clm's whole ingest of a JSONL file against the raw path, and dedupe against a large curated table.

What is timed, per size N (one process, alternating, median of ``--repeat``):

- ``ingest``: :func:`clm_lib.data.ingest.ingest_file` of a file of N new records into a lake that already holds
  the earlier repeats' batches: read, tag, content ids, dedupe against curated, the GX suite, the raw / curated /
  quarantine Delta commits (and the id index), clm's database. Every repeat is a new file (new records), so
  nothing is skipped as already ingested.
- ``raw``: the same file read by ``pyarrow.json.read_json`` and written with one ``write_deltalake`` into a new
  table: the floor any ingestion pays.

The ratio is raw seconds / ingest seconds (the target is >= 0.5). Per-stage seconds come from the batch's own
``stages`` (the raw commit and the id index read run beside prepare/dedupe/validate, so stages overlap).

Dedupe against a large curated table, per size C (``--curated``): a curated table of C rows is written straight
with ``write_deltalake`` (in chunks of 1M, not through ingest), then for a batch of ``--dedupe-batch`` records
(10 % of them already curated) and for a micro-batch of 100, the dedupe step is timed two ways: the index
(:mod:`clm_lib.data.id_index`, what ingest does) and the scan every batch did before (read every curated id but
the batch's own, ``is_in``). The index's one-time build from the table (what the first ingest after upgrading
does) is timed too.

Records are synthetic and demo-like: support tickets of the demo's five product lines
(:func:`clm_lib.demo.stream.generate_task`) with a case reference appended (prompts ~190 characters), the
triage answer as the response, every record distinct.

    clm bench ingest                     # 100k and 1M, 3 repeats; dedupe against 1M and 10M curated rows
    clm bench ingest --quick             # 100k only, 3 repeats; dedupe against 1M
    clm bench ingest --sizes 2000 --repeat 1 --curated 20000 --dedupe-batch 1000 --out /tmp/x.json  # seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

REPO = Path(__file__).resolve().parent.parent
TASKS = ("routers", "billing", "thermostats", "ev_chargers", "payments_api")
POOL = 300
"""Distinct tickets drawn per product line; a case reference makes every record distinct."""


def _pool() -> tuple[pa.Array, pa.Array]:
    """Prompts and responses of ``POOL`` distinct tickets per product line, line after line."""
    from clm_lib.demo.stream import generate_task

    drawn = [r for task in TASKS for r in generate_task(task, POOL, seed=0)]
    return pa.array([r["prompt"] for r in drawn]), pa.array([r["response"] for r in drawn])


def records(start: int, n: int, pool: tuple[pa.Array, pa.Array]) -> pa.Table:
    """Records ``start .. start+n-1``: the same for the same numbers, each distinct."""
    i = np.arange(start, start + n, dtype=np.int64)
    task_of = i % len(TASKS)
    which = pa.array(task_of * POOL + (i // len(TASKS)) % POOL)
    reference = pc.utf8_lpad(pc.cast(pa.array(i), pa.string()), width=9, padding="0")
    prompts = pc.binary_join_element_wise(pool[0].take(which), " Case reference ", reference, ", priority normal.", "")
    return pa.table({"task": pa.array(TASKS).take(pa.array(task_of)), "prompt": prompts,
                     "response": pool[1].take(which)})


def write_jsonl(path: Path, table: pa.Table) -> Path:
    """One JSON object per line, as people export them (``json.dumps`` of each record)."""
    with path.open("w", encoding="utf-8") as fh:
        for batch in table.to_batches(max_chunksize=100_000):
            fh.writelines(json.dumps(r) + "\n" for r in batch.to_pylist())
    return path


def _cfg(home: Path) -> Any:
    from clm_lib.config import REPO_ROOT, load_config
    from clm_lib.db import upgrade

    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(home)})
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.database_url)
    return cfg


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def bench_size(n: int, repeat: int, work: Path, pool: tuple) -> dict[str, Any]:
    """Ingest vs raw path for files of ``n`` records, alternating, ``repeat`` times."""
    from deltalake import write_deltalake

    from clm_lib.data import lake
    from clm_lib.data.ingest import ingest_file

    cfg = _cfg(work / f"home-{n}")
    warm = write_jsonl(cfg.landing_dir / "warm.jsonl", records(10**9, 100, pool))
    ingest_file(cfg, warm)  # imports, the suite, the tables exist: a scheduler's task after its first batch
    ingest_s, raw_s, raw_zstd_s, stages, counts = [], [], [], [], []
    for rep in range(repeat):
        path = write_jsonl(cfg.landing_dir / f"drop-{n}-{rep}.jsonl", records(rep * n, n, pool))
        target = work / f"raw-{n}-{rep}"
        started = time.perf_counter()
        write_deltalake(str(target), pajson.read_json(path))
        raw_s.append(time.perf_counter() - started)
        shutil.rmtree(target)
        started = time.perf_counter()  # the same with the Parquet settings clm writes with (zstd level 1)
        write_deltalake(str(target), pajson.read_json(path), writer_properties=getattr(lake, "WRITER", None))
        raw_zstd_s.append(time.perf_counter() - started)
        shutil.rmtree(target)
        started = time.perf_counter()
        result = ingest_file(cfg, path)
        ingest_s.append(time.perf_counter() - started)
        stages.append(getattr(result, "stages", {}))  # absent before clm measured its stages
        counts.append({k: getattr(result, k)
                       for k in ("rows_in", "rows_curated", "rows_quarantined", "rows_duplicate")})
        print(f"  {n:>9,} records, repeat {rep + 1}: ingest {ingest_s[-1]:.3f} s, raw path {raw_s[-1]:.3f} s "
              f"(ratio {raw_s[-1] / ingest_s[-1]:.2f}), raw path with zstd {raw_zstd_s[-1]:.3f} s", flush=True)
    shutil.rmtree(cfg.home)
    ingest, raw = _median(ingest_s), _median(raw_s)
    names = sorted({k for s in stages for k in s})
    return {
        "records": n,
        "repeats": repeat,
        "ingest_s": [round(x, 4) for x in ingest_s],
        "raw_s": [round(x, 4) for x in raw_s],
        "raw_zstd_s": [round(x, 4) for x in raw_zstd_s],
        "ingest_median_s": ingest,
        "raw_median_s": raw,
        "ingest_records_per_s": round(n / ingest),
        "raw_records_per_s": round(n / raw),
        "ratio": round(raw / ingest, 3),
        "raw_zstd_median_s": _median(raw_zstd_s),
        "ratio_to_raw_zstd": round(_median(raw_zstd_s) / ingest, 3),
        "target_ratio": 0.5,
        "met": raw / ingest >= 0.5,
        "stages_median_s": {k: _median([s.get(k, 0.0) for s in stages]) for k in names},
        "counts": counts,
    }


def build_curated(cfg: Any, rows: int, pool: tuple, chunk: int = 1_000_000) -> float:
    """A curated table of ``rows`` records written straight with write_deltalake (records ``10**10 + i``)."""
    from deltalake import write_deltalake

    from clm_lib.data import lake
    from clm_lib.data.records import content_ids, splits

    started = time.perf_counter()
    now = datetime.now(UTC)
    for first in range(0, rows, chunk):
        part = records(10**10 + first, min(chunk, rows - first), pool)
        ids = content_ids(part["task"], part["prompt"], part["response"])
        m = part.num_rows
        table = lake.conform("curated", part.append_column("id", ids).append_column(
            "split", splits(ids, cfg.data.eval_fraction)).append_column(
            "source", pa.repeat(pa.scalar("bench"), m)).append_column(
            "batch_id", pa.repeat(pa.scalar(f"bench{first // chunk:08d}"), m)).append_column(
            "line", pa.arange(1, m + 1)).append_column(
            "ingested_at", pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), m)).append_column(
            "metadata", pa.repeat(pa.scalar("{}"), m)))
        write_deltalake(lake.table_uri(cfg, "curated"), table, mode="append")
    return time.perf_counter() - started


def _scan_dedupe(cfg: Any, ids: pa.Array, batch_id: str) -> pa.Array:
    """What dedupe did before the index: read every curated id but the batch's own, then is_in."""
    from clm_lib.data import lake

    curated = lake.read_table(cfg, "curated", columns=["id"], where=pc.field("batch_id") != batch_id)["id"]
    return pc.is_in(ids, value_set=curated.combine_chunks())


def bench_dedupe(sizes: list[int], batch: int, repeat: int, work: Path, pool: tuple) -> dict[str, Any]:
    from clm_lib.data import id_index
    from clm_lib.data.records import content_digests

    out: dict[str, Any] = {"batch": batch, "micro_batch": 100, "already_curated_share": 0.1, "by_curated_rows": {}}
    for rows in sizes:
        cfg = _cfg(work / f"dedupe-{rows}")
        build_s = build_curated(cfg, rows, pool)
        print(f"  curated table of {rows:,} rows written in {build_s:.1f} s", flush=True)
        started = time.perf_counter()
        id_index.current(cfg)
        index_build_s = time.perf_counter() - started
        entry: dict[str, Any] = {"curated_rows": rows, "table_write_s": round(build_s, 2),
                                 "index_build_s": round(index_build_s, 3)}
        for label, size in (("batch", batch), ("micro_batch", 100)):
            old = records(10**10 + rows // 2, size // 10, pool)  # 10 % already curated
            new = records(2 * 10**10, size - old.num_rows, pool)
            both = pa.concat_tables([old, new])
            ids, keys = content_digests(both["task"], both["prompt"], both["response"])
            index_s, scan_s = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                hit_index = id_index.seen(cfg, keys, exclude_batch="bench-batch")
                index_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                hit_scan = _scan_dedupe(cfg, ids, "bench-batch")
                scan_s.append(time.perf_counter() - started)
            assert hit_index.equals(hit_scan), "the index and the scan disagree"
            assert pc.sum(hit_index).as_py() == old.num_rows
            entry[label] = {"records": size, "index_s": _median(index_s), "scan_s": _median(scan_s),
                            "speedup": round(_median(scan_s) / _median(index_s), 1)}
            print(f"  dedupe of {size:,} against {rows:,}: index {entry[label]['index_s']:.3f} s, "
                  f"scan {entry[label]['scan_s']:.3f} s", flush=True)
        out["by_curated_rows"][str(rows)] = entry
        shutil.rmtree(cfg.home)
    return out


def machine() -> dict[str, Any]:
    import deltalake

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pyarrow": pa.__version__,
        "deltalake": deltalake.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="records per file, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--curated", default="1000000,10000000", help="curated table sizes for the dedupe part "
                        "(comma-separated; empty: skip it)")
    parser.add_argument("--dedupe-batch", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100k only; dedupe against 1M")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ingest.json"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.curated = "100000", "1000000"
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    curated = [int(s) for s in args.curated.split(",") if s]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="clm-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "command": "clm bench ingest " + " ".join(argv or []),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": {"kind": "synthetic demo-like support tickets, every record distinct", "tasks": list(TASKS)},
    }
    try:
        pool = _pool()
        sample = records(0, 10_000, pool)
        report["data"]["prompt_chars_mean"] = round(pc.mean(pc.utf8_length(sample["prompt"])).as_py(), 1)
        report["sizes"] = {}
        for n in sizes:
            report["sizes"][str(n)] = bench_size(n, args.repeat, work, pool)
        if curated:
            report["dedupe"] = bench_dedupe(curated, args.dedupe_batch, args.repeat, work, pool)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for n, row in report.get("sizes", {}).items():
        print(f"{int(n):>9,} records: ingest {row['ingest_records_per_s']:,}/s, raw path {row['raw_records_per_s']:,}/s"
              f", ratio {row['ratio']:.2f} (target 0.5: {'met' if row['met'] else 'NOT met'})")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
