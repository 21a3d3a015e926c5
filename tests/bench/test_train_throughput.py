"""``clm bench train-throughput`` on CPU (``--smoke``): it runs LoRA and full fine-tune steps and writes its results;
its FLOPs accounting is PaLM's (the GPU numbers are the command's, on a machine that has one)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import train_throughput as bench


def test_flops_per_token_counts_weights_and_attention_and_lora_skips_weight_gradients():
    config = SimpleNamespace(num_hidden_layers=2, hidden_size=8)
    assert bench.flops_per_token(1000, config, 16, lora=False) == 6 * 1000 + 12 * 2 * 8 * 16
    assert bench.flops_per_token(1000, config, 16, lora=True) == 4 * 1000 + 12 * 2 * 8 * 16


def test_the_smoke_run_trains_both_modes_and_writes_its_results(tmp_path, capsys):
    assert bench.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "train_throughput_smoke.json").read_text())
    lora, full = report["results"]
    assert (lora["mode"], full["mode"]) == ("lora", "full") and report["device"].startswith("CPU")
    assert full["trainable"] == full["parameters"] and 0 < lora["trainable"] < lora["parameters"] / 5
    for r in (lora, full):
        assert r["tokens_per_step"] == 2 * 32 and r["step_seconds"] > 0
        assert abs(r["tokens_per_s"] * r["step_seconds"] / r["tokens_per_step"] - 1) < 0.05  # rounding only
        assert r["model_tflops"] > 0 and r["mfu"] is None  # no peak is known for a CPU
    assert "| lora |" in (tmp_path / "train_throughput_smoke.md").read_text() and "| full |" in capsys.readouterr().out
