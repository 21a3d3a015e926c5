from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from clm_lib.cli import cli
from clm_lib.config import REPO_ROOT, load_config
from clm_lib.demo.stream import generate_task, write_records
from clm_lib.training.loop import CHECKPOINT_PREFIX, latest_checkpoint
from clm_lib.training.recipe import SUMMARY_FILE, train_update
from clm_lib.training.train_cli import read_records

from .helpers import records

TINY = REPO_ROOT / "include" / "tiny.yaml"


@pytest.fixture
def env(tiny_clm_env) -> dict[str, str]:
    return tiny_clm_env(CLM__TRAINING__MAX_STEPS="8", CLM__TRAINING__CHECKPOINT_EVERY="4")


def _clm(*args: str, env: dict[str, str]):
    return CliRunner().invoke(cli, list(args), env=env)


def test_train_from_a_jsonl_file_then_continue_it(tmp_path, env):
    new = write_records(tmp_path / "new.jsonl", generate_task("routers", 30, 0), "jsonl")
    result = _clm("train", "--new", str(new), "--out", str(tmp_path / "first"), env=env)
    assert result.exit_code == 0, result.output
    assert "trained 8 steps" in result.output
    summary = json.loads((tmp_path / "first" / SUMMARY_FILE).read_text())
    assert summary["run_id"] == "first" and summary["new_rows"] == 30 and summary["resumed_from_step"] is None

    replay = write_records(tmp_path / "replay.csv", generate_task("routers", 10, 1), "csv")
    more = write_records(tmp_path / "more.parquet", generate_task("billing", 20, 0), "parquet")
    args = ["train", "--new", str(more), "--replay", str(replay), "--parent-adapter", str(tmp_path / "first/adapter")]
    result = _clm(*args, "--out", str(tmp_path / "second"), "--run-id", "r2", env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "second" / SUMMARY_FILE).read_text())
    assert summary["parent_adapter_dir"] == str(tmp_path / "first" / "adapter")
    assert (summary["run_id"], summary["replay_rows"]) == ("r2", 10)


def test_bad_input_is_a_clear_error(tmp_path, env):
    bad = tmp_path / "bad.parquet"
    pq.write_table(records("routers", 5).drop_columns(["response"]), bad)
    result = _clm("train", "--new", str(bad), "--out", str(tmp_path / "o"), env=env)
    assert (
        result.exit_code == 2 and "clm: error: --new" in result.output and "lacks column(s) response" in result.output
    )
    other = tmp_path / "data.txt"
    other.write_text("hello")
    result = _clm("train", "--new", str(other), "--out", str(tmp_path / "o"), env=env)
    assert result.exit_code == 2 and "unknown format '.txt'" in result.output
    assert not (tmp_path / "o").exists()


def test_records_get_content_ids_and_lose_held_out_rows(tmp_path):
    table = records("routers", 6)
    ids = table.column("id").to_pylist()
    path = tmp_path / "curated.parquet"
    import pyarrow as pa

    pq.write_table(table.append_column("split", pa.array(["train"] * 4 + ["eval"] * 2)), path)
    assert read_records(path, "new").column("id").to_pylist() == ids[:4]
    pq.write_table(table.drop_columns(["id"]), path)
    computed = read_records(path, "new").column("id").to_pylist()
    assert len(set(computed)) == 6 and all(len(i) == 64 for i in computed)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, tiny_base):
    new, replay = tmp_path / "new.parquet", tmp_path / "replay.parquet"
    pq.write_table(records("routers", 48), new)
    pq.write_table(records("billing", 20), replay)  # the replay strategy's sampler must resume too
    settings = {
        "CLM_CONFIG": str(TINY),
        "CLM_HOME": str(tmp_path / "home"),
        "CLM__MODEL__BASE_PATH": str(tiny_base),
        "CLM__TRAINING__MAX_STEPS": "50",
        "CLM__TRAINING__CHECKPOINT_EVERY": "10",
    }
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clm_lib.cli", "train", "--new", str(new), "--replay", str(replay), "--out", str(out)]
    env = {**os.environ, **settings}

    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while latest_checkpoint(out / "checkpoints") is None and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    checkpoint = latest_checkpoint(out / "checkpoints")
    assert checkpoint is not None and killed.returncode == -signal.SIGKILL
    assert not (out / SUMMARY_FILE).exists(), "the run finished before it could be killed"
    step = int(checkpoint.name[len(CHECKPOINT_PREFIX) :])
    assert 10 <= step < 50

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and f"{checkpoint.name} at step {step} of 50" in resumed.stderr
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["resumed_from_step"] == step and summary["steps"] == 50 and len(summary["losses"]) == 50
    assert summary["examples_seen"]["replay"] > 0

    # The same update, never interrupted, in this process: the same weights, bit for bit.
    cfg = load_config(TINY, environ=settings)
    straight = train_update(
        cfg,
        new_data=read_records(new, "new"),
        replay_data=read_records(replay, "replay"),
        parent_adapter_dir=None,
        output_dir=tmp_path / "straight",
        run_id="straight",
    )
    expected = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert summary["losses"] == json.loads((tmp_path / "straight" / SUMMARY_FILE).read_text())["losses"]


def test_clm_train_is_registered():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "--deepspeed" in result.output and "--parent-adapter" in result.output
    assert Path(REPO_ROOT / "include" / "deepspeed" / "zero2.json").is_file()
