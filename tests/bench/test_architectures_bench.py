"""``clm bench architectures --smoke``: each phase runs in its own process and the results are written (the ~100M
numbers are the command's, recorded in docs/training.md). One architecture, to keep it short: every process pays
for importing torch; tests/clm_lib/training/test_architectures.py runs the loop itself on all of them."""

from __future__ import annotations

import json

import architectures as bench
import torch


def test_the_100m_configs_are_near_100m_parameters():
    from transformers import AutoConfig, AutoModelForCausalLM

    for arch, spec in bench.SIZES["100m"].items():
        config = AutoConfig.for_model(**spec, vocab_size=1024)
        with torch.device("meta"):  # counts parameters without allocating them
            n = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        assert 85e6 < n < 115e6, (arch, n)


def test_the_smoke_run_measures_every_phase_in_its_own_process(tmp_path, capsys):
    assert bench.main(["--smoke", "--archs", "gpt2", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "architectures_smoke.json").read_text())
    gpt2 = report["architectures"]["gpt2"]
    assert gpt2["architecture"]["model_type"] == "gpt2" and report["steps"] == 2
    assert gpt2["build"]["parameters"] > 0
    update = gpt2["update"]
    assert update["steps"] == 2 and update["seconds_per_step"] > 0 and update["lora_parameters"] > 0
    assert update["lora_targets"] == ["c_attn", "c_fc", "c_proj"] and update["fan_in_fan_out"] is True
    assert sorted(gpt2["evaluate"]["scores"]) == ["billing", "routers"]
    for phase in bench.PHASES:
        assert gpt2[phase]["peak_rss_mib"] >= gpt2[phase]["idle_rss_mib"] > 0 and gpt2[phase]["wall_s"] > 0
    assert "| gpt2 |" in (tmp_path / "architectures_smoke.md").read_text() and "| gpt2 |" in capsys.readouterr().out
