"""DeepSpeed on CPU (gloo). The first engine in a fresh environment JIT-compiles DeepSpeed's shm_comm op (~30 s,
then cached in ~/.cache/torch_extensions), so the tests that start an engine are slow-marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from clm_lib.config import REPO_ROOT
from clm_lib.errors import TrainingError
from clm_lib.modeling.load import load_model
from clm_lib.training.deepspeed_engine import load_config as load_ds_config
from clm_lib.training.loop import latest_checkpoint, train_loop
from clm_lib.training.recipe import SUMMARY_FILE, train_update

from .helpers import Spy, lora_state, make_context, records

CONFIGS = REPO_ROOT / "include" / "deepspeed"


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_shipped_configs_load_with_auto_values_filled_in(tiny_cfg, stage):
    tiny_cfg.training.batch_size = 16
    tiny_cfg.training.max_grad_norm = 0.5
    config = load_ds_config(f"include/deepspeed/zero{stage}.json", tiny_cfg.training, world_size=2)
    assert config["zero_optimization"]["stage"] == stage
    assert (config["train_micro_batch_size_per_gpu"], config["train_batch_size"]) == (8, 16)
    assert (config["gradient_accumulation_steps"], config["gradient_clipping"]) == (1, 0.5)


def test_bad_configs_are_clear_errors(tmp_path, tiny_cfg):
    def write(content) -> Path:
        path = tmp_path / "ds.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    with pytest.raises(TrainingError, match="cannot read the DeepSpeed config"):
        load_ds_config(tmp_path / "missing.json", tiny_cfg.training)
    with pytest.raises(TrainingError, match="not valid JSON"):
        load_ds_config(write("{stage: 2"), tiny_cfg.training)
    with pytest.raises(TrainingError, match="sets optimizer: clm trains with its own AdamW"):
        load_ds_config(write({"optimizer": {"type": "Adam"}}), tiny_cfg.training)
    with pytest.raises(TrainingError, match="gradient_accumulation_steps must be 1"):
        load_ds_config(write({"gradient_accumulation_steps": 4}), tiny_cfg.training)
    with pytest.raises(TrainingError, match="ZeRO stage 3 is not supported"):
        load_ds_config(write({"zero_optimization": {"stage": 3}}), tiny_cfg.training)
    tiny_cfg.training.batch_size = 2
    with pytest.raises(TrainingError, match="smaller than the 4 ranks"):
        load_ds_config(write({}), tiny_cfg.training, world_size=4)


def _weights(adapter_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(adapter_dir)): load_file(str(p)) for p in adapter_dir.rglob("*.safetensors")}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shared", "per_task"])
def test_zero_stages_train_what_plain_pytorch_trains(tmp_path, tiny_cfg, mode):
    tiny_cfg.training.max_steps = 12
    tiny_cfg.training.adapters.mode = mode
    new = records("routers", 30)
    if mode == "per_task":  # two adapters trained in one step, each on its task's share of the batch
        import pyarrow as pa

        new = pa.concat_tables([new, records("billing", 30)])

    def run(name: str, deepspeed: str | None):
        tiny_cfg.training.deepspeed = deepspeed
        return train_update(
            tiny_cfg, new_data=new, replay_data=None, parent_adapter_dir=None, output_dir=tmp_path / name, run_id=name
        )

    plain = _weights(run("plain", None).adapter_dir)
    for stage in (0, 1, 2) if mode == "shared" else (2,):
        result = run(f"zero{stage}", f"include/deepspeed/zero{stage}.json")
        summary = json.loads((tmp_path / f"zero{stage}" / SUMMARY_FILE).read_text())
        assert summary["deepspeed"]["zero_optimization"]["stage"] == stage
        got = _weights(result.adapter_dir)
        assert got.keys() == plain.keys()
        for file, tensors in plain.items():
            assert all(torch.allclose(tensors[k], got[file][k], atol=1e-5) for k in tensors), (stage, file)


@pytest.mark.slow
def test_an_interrupted_zero2_run_resumes_to_the_same_weights(tmp_path, tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps = 6
    tiny_cfg.training.checkpoint_every = 2
    tiny_cfg.training.batch_size = 4
    data = records("routers", 10)
    zero2 = load_ds_config(CONFIGS / "zero2.json", tiny_cfg.training)

    straight = make_context(tiny_cfg, tiny_base, data)
    straight.deepspeed = zero2
    train_loop(straight, [], tmp_path / "a", "fp")

    crashed = make_context(tiny_cfg, tiny_base, data)
    crashed.deepspeed = zero2
    with pytest.raises(RuntimeError, match="killed"):
        train_loop(crashed, [Spy(crash_at=5)], tmp_path / "b", "fp")
    assert (latest_checkpoint(tmp_path / "b") / "deepspeed").is_dir()

    spy = Spy()
    resumed = make_context(tiny_cfg, tiny_base, data)
    resumed.deepspeed = zero2
    train_loop(resumed, [spy], tmp_path / "b", "fp")
    assert spy.steps == [4, 5] and resumed.resumed_from == 4
    expected, got = lora_state(straight.model), lora_state(resumed.model)
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-6)


@pytest.mark.slow
def test_clm_train_under_the_deepspeed_launcher_with_zero2(tmp_path, tiny_base):
    """What a GPU pod runs, on CPU: `deepspeed --no_local_rank --num_gpus 1 clm train ... --deepspeed zero2.json`."""
    new = tmp_path / "new.parquet"
    pq.write_table(records("routers", 40).drop_columns(["id"]), new)  # ids are computed as ingestion does
    env = {
        **os.environ,
        "CLM_CONFIG": str(REPO_ROOT / "include" / "tiny.yaml"),
        "CLM_HOME": str(tmp_path / "home"),
        "CLM__MODEL__BASE_PATH": str(tiny_base),
        "CLM__TRAINING__MAX_STEPS": "30",
        "DS_ACCELERATOR": "cpu",
    }
    launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent))
    clm = shutil.which("clm", path=str(Path(sys.executable).parent))
    assert launcher and clm, "deepspeed and clm must be installed in the test environment"
    out = tmp_path / "out"
    cmd = [launcher, "--no_local_rank", "--num_nodes", "1", "--num_gpus", "1", "--master_port", str(_free_port())]
    cmd += [clm, "train", "--new", str(new), "--out", str(out), "--deepspeed", str(CONFIGS / "zero2.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 30 steps" in proc.stdout
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["deepspeed"]["zero_optimization"]["stage"] == 2 and summary["world_size"] == 1
    losses = summary["losses"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    model, tok = load_model(tiny_base, out / "adapter")
    assert hasattr(model, "peft_config") and tok.eos_token_id is not None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
