"""``clm bench continual --domain-text``: the recommended arm with and without a domain-adapted base."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _stream(folder: Path) -> Path:
    folder.mkdir()
    tasks = [("greet", "hello"), ("licence", "GPL")]
    for number, (task, label) in enumerate(tasks, 1):
        for split, n in (("train", 16), ("test", 6)):
            _jsonl(folder / f"{number:02d}_{task}.{split}.jsonl",
                   [{"prompt": f"{task} example {i}", "response": label} for i in range(n)])  # fmt: skip
    return folder


def test_bad_domain_options_are_refused_before_anything_is_built(tmp_path, capsys):
    import continual

    stream = _stream(tmp_path / "s")
    (tmp_path / "empty").mkdir()
    args = ["--stream", str(stream), "--out-dir", str(tmp_path / "out")]
    assert continual.main([*args, "--domain-text", str(tmp_path / "empty")]) == 2
    assert "no .txt, .md or .jsonl files" in capsys.readouterr().err
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("some text")
    assert continual.main([*args, "--domain-text", str(tmp_path / "text"), "--domain-from", "3"]) == 2
    assert "--domain-from 3: the stream has tasks 1 to 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_domain_arm_runs_end_to_end(tmp_path):
    stream = _stream(tmp_path / "tiny")
    text = tmp_path / "text"
    text.mkdir()
    (text / "licences.txt").write_text("This program is free software; you can redistribute it. " * 60)
    steps = {"CLM__TRAINING__MAX_STEPS": "4", "CLM__MODEL__PRETRAIN_STEPS": "4", "CLM__TRAINING__BATCH_SIZE": "4",
             "CLM__TRAINING__DOMAIN__MAX_STEPS": "4"}  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DS_ACCELERATOR": "cpu", **steps}
    cmd = [sys.executable, str(REPO / "bench" / "continual.py"), "--stream", str(stream), "--smoke"]
    cmd += ["--arms", "recommended", "--domain-text", str(text), "--domain-from", "2"]
    cmd += ["--out-dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "continual_tiny_smoke.json").read_text())
    assert set(result["arms"]) == {"recommended", "recommended_domain", "joint"}
    domain = result["domain"]
    assert (domain["earlier_tasks"], domain["later_tasks"], domain["steps"]) == (["greet"], ["licence"], 4)
    groups = {t["task"]: t["group"] for t in domain["base_only_comparison"]["tasks"]}
    assert groups == {"greet": "original", "licence": "new"}
    # The first update is shared (same base until the switch); the second trains on the adapted base.
    updates = result["arms"]["recommended_domain"]["updates"][0]
    assert updates[0]["shared_with"] == "recommended/0-greet" and updates[1]["shared_with"] is None
    assert "## Domain adaptation" in (tmp_path / "out" / "continual_tiny_smoke.md").read_text()
