"""`clm bench continual --stream DIR`: a user's task folder, checked file by file, then run like the demo's stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continual_stream import StreamError, load_stream, read_task_file, scan

REPO = Path(__file__).resolve().parents[2]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _pairs(n: int, label: str) -> list[dict]:
    return [{"prompt": f"item {i} of {label}", "response": label} for i in range(n)]


def _stream(folder: Path) -> Path:
    """Three tasks in three formats, one with a task column, one without, one in Parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    _jsonl(folder / "01_colours.train.jsonl", [{**r, "task": "colours"} for r in _pairs(12, "red")])
    _jsonl(folder / "01_colours.test.ndjson", _pairs(4, "red"))
    (folder / "02_sizes.train.csv").write_text("prompt,response\n" + "".join(f"s{i},big\n" for i in range(8)))
    (folder / "02_sizes.test.csv").write_text('prompt,response\n"a, quoted one",small\n')
    pq.write_table(pa.Table.from_pylist(_pairs(6, "x")), folder / "10_shapes.train.parquet")
    pq.write_table(pa.Table.from_pylist(_pairs(3, "x")), folder / "10_shapes.test.parquet")
    (folder / "README.md").write_text("not a task file: left alone\n")
    return folder


def test_a_good_folder_reads_in_number_order_with_its_tasks(tmp_path):
    folder = _stream(tmp_path / "s")
    assert [(f.number, f.task) for f in scan(folder)] == [(1, "colours"), (2, "sizes"), (10, "shapes")]
    stream, info = load_stream(folder)
    assert stream.tasks == ["colours", "sizes", "shapes"]
    assert info["train_rows"] == {"colours": 12, "sizes": 8, "shapes": 6}
    assert info["eval_rows"] == {"colours": 4, "sizes": 1, "shapes": 3}
    assert set(stream.train["sizes"].column("task").to_pylist()) == {"sizes"}  # filled in from the file name
    assert stream.eval["sizes"].column("prompt").to_pylist() == ["a, quoted one"]
    assert info["path"] == str(folder.resolve()) and len(info["sha256"]) == 64
    assert "README.md" not in info["files"]
    assert info["test_prompts_in_train"] == {"colours": 4, "sizes": 0, "shapes": 3}


def test_caps_draw_a_seeded_subsample_and_the_hash_follows_the_content(tmp_path):
    folder = _stream(tmp_path / "s")
    a, info = load_stream(folder, tasks=2, n_train=5, n_eval=2, seed=0)
    b, _ = load_stream(folder, tasks=2, n_train=5, n_eval=2, seed=0)
    c, _ = load_stream(folder, tasks=2, n_train=5, n_eval=2, seed=1)
    assert a.tasks == ["colours", "sizes"]
    assert info["train_rows"] == {"colours": 5, "sizes": 5} and info["eval_rows"] == {"colours": 2, "sizes": 1}
    ids = [s.train["colours"].column("id").to_pylist() for s in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    _jsonl(folder / "01_colours.test.ndjson", _pairs(4, "blue"))
    assert load_stream(folder)[1]["sha256"] != info["sha256"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"01_a.train.jsonl": "ok"}, "01_a.train.jsonl: task 'a' has no test file (01_a.test.EXT)"),
        ({"01_a.test.csv": "ok"}, "01_a.test.csv: task 'a' has no train file"),
        (
            {"01_a.train.jsonl": "ok", "01_a.test.jsonl": "ok", "01_b.train.jsonl": "ok", "01_b.test.jsonl": "ok"},
            "01_b.train.jsonl: number 01 is also task 'a''s; NN orders tasks",
        ),
        (
            {"01_a.train.jsonl": "ok", "01_a.test.jsonl": "ok", "02_a.train.jsonl": "ok", "02_a.test.jsonl": "ok"},
            "02_a.train.jsonl: task 'a' is also number 01; each task comes once",
        ),
        (
            {"01_a.train.jsonl": "ok", "01_a.train.csv": "ok", "01_a.test.csv": "ok"},
            "01_a.train.jsonl: task 'a' already has a train file, 01_a.train.csv",
        ),
        ({"01_my-task.train.jsonl": "ok"}, "01_my-task.train.jsonl: task name 'my-task' is not a valid identifier"),
        ({"a.train.jsonl": "ok"}, "a.train.jsonl: a task file is named NN_task.train.EXT or NN_task.test.EXT"),
        ({"01_a.train.txt": "ok"}, "01_a.train.txt: unknown extension '.txt'"),
        ({"notes.md": "no task here"}, "no task files"),
        ({"01_a.train.csv": "ok", "01_a.test.csv": "ok"}, "one task (a); forgetting needs a second one after it"),
    ],
)
def test_a_bad_layout_is_refused_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(StreamError) as exc:
        scan(tmp_path)
    assert message in str(exc.value)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(StreamError, match="not a folder"):
        scan(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("01_a.train.jsonl", "", "01_a.train.jsonl: no records"),
        ("01_a.train.csv", "prompt,response\n", "01_a.train.csv: no records"),
        ("01_a.train.jsonl", '{"prompt": "p", "response": "r"}\n{"response": "r"}\n', "jsonl line 2: no prompt"),
        (
            "01_a.train.jsonl",
            '{"prompt": "p", "response": "  "}\n',
            "01_a.train.jsonl line 1: no response (it is blank)",
        ),
        ("01_a.train.csv", "prompt\nhello\n", "01_a.train.csv line 2: no response"),
        ("01_a.train.jsonl", '{"prompt": "p", "response": "r", "task": "b"}\n', "line 1: task 'b' is not the file's"),
        ("01_a.train.jsonl", '{"prompt": "p", "response": "r"}\n{"prompt": \n', "line 2: not valid JSON"),
        ("01_a.train.json", '{"prompt": "p", "response": 3}\n', "01_a.train.json line 1: 'response' is a int"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StreamError) as exc:
        read_task_file(path, "a")
    assert message in str(exc.value)


def test_a_parquet_record_without_a_prompt_names_its_row(tmp_path):
    path = tmp_path / "01_a.test.parquet"
    pq.write_table(pa.table({"prompt": ["p", None], "response": ["r", "r"]}), path)
    with pytest.raises(StreamError, match=r"01_a.test.parquet row 2: no prompt"):
        read_task_file(path, "a")


def test_the_command_line_says_what_is_wrong_before_building_anything(tmp_path, capsys):
    import continual

    (tmp_path / "01_a.train.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    (tmp_path / "02_b.train.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    assert continual.main(["--stream", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "task 'a' has no test file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_stream_runs_end_to_end(tmp_path):
    """Two tasks, the sequential arm and its joint bound, a few steps: the outputs, on the stream's tasks."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    for number, (task, label) in enumerate([("greet", "hello"), ("part", "goodbye")], 1):
        _jsonl(folder / f"{number:02d}_{task}.train.jsonl", _pairs(24, label))
        _jsonl(folder / f"{number:02d}_{task}.test.jsonl", _pairs(6, label))
    steps = {"CLM__TRAINING__MAX_STEPS": "4", "CLM__MODEL__PRETRAIN_STEPS": "4", "CLM__TRAINING__BATCH_SIZE": "4"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DS_ACCELERATOR": "cpu", **steps}
    cmd = [sys.executable, str(REPO / "bench" / "continual.py"), "--stream", str(folder), "--smoke"]
    cmd += ["--arms", "sequential", "--train-per-task", "16", "--out-dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    result = json.loads((out / "continual_tiny_smoke.json").read_text())
    assert (out / "continual_tiny_smoke.png").stat().st_size > 1000
    assert "greet (16/6), part (16/6)" in (out / "continual_tiny_smoke.md").read_text()
    assert result["tasks"] == ["greet", "part"]
    assert result["stream"]["path"] == str(folder.resolve()) and len(result["stream"]["sha256"]) == 64
    assert set(result["arms"]) == {"sequential", "joint"} and "bound_checks" not in result
    seq = result["arms"]["sequential"]
    assert seq["tasks"] == ["greet", "part"] and len(seq["R"]) == 2
