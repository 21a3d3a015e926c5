"""``clm bench ingest`` on small sizes: it runs, its records are distinct and demo-like, its counts reconcile, and
the index and the old scan agree (the 100k / 1M / 10M runs are the command's, not the tests')."""

from __future__ import annotations

import json

import ingest as bench
import pyarrow.compute as pc

from clm_lib.data.records import content_ids


def test_records_are_distinct_demo_like_and_reproducible():
    pool = bench._pool()
    table = bench.records(0, 3000, pool)
    assert table.column_names == ["task", "prompt", "response"]
    assert set(table["task"].to_pylist()) == set(bench.TASKS)
    assert pc.count_distinct(content_ids(table["task"], table["prompt"], table["response"])).as_py() == 3000
    assert 150 < pc.mean(pc.utf8_length(table["prompt"])).as_py() < 250
    assert bench.records(10, 5, pool).equals(table.slice(10, 5))


def test_the_command_writes_its_results(tmp_path, capsys):
    out = tmp_path / "ingest.json"
    assert bench.main(["--sizes", "2000", "--repeat", "2", "--curated", "5000", "--dedupe-batch", "500",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    row = report["sizes"]["2000"]
    assert row["ratio"] == round(row["raw_median_s"] / row["ingest_median_s"], 3)
    assert row["ingest_records_per_s"] > 0 and len(row["ingest_s"]) == len(row["raw_s"]) == 2
    assert all(c == {"rows_in": 2000, "rows_curated": 2000, "rows_quarantined": 0, "rows_duplicate": 0}
               for c in row["counts"])
    assert {"read", "prepare", "dedupe", "validate", "raw_commit", "curated_commit", "database"} <= set(
        row["stages_median_s"])
    dedupe = report["dedupe"]["by_curated_rows"]["5000"]
    assert dedupe["batch"]["records"] == 500 and dedupe["batch"]["index_s"] > 0 and dedupe["index_build_s"] > 0
    assert report["machine"]["cpus"] and report["data"]["prompt_chars_mean"] > 150
    assert "ratio" in capsys.readouterr().out
