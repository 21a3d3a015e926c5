"""`clm bench continual --smoke`, end to end: plain fine-tuning forgets, the recommended combination does not.

Three tasks at the shipped settings (include/clm.yaml), the bounds in ``SCALES["smoke"]`` of bench/continual.py
(quoted in docs/continual.md). About 3-4 minutes on two idle cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_benchmark_shows_forgetting_and_its_cure(tmp_path):
    from continual import SCALES

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "continual.py"), "--smoke", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "continual_smoke.json").read_text())
    assert (tmp_path / "continual_smoke.png").stat().st_size > 10_000
    assert "| recommended |" in (tmp_path / "continual_smoke.md").read_text()

    arms = result["arms"]
    assert set(arms) == {"sequential", "recommended", "joint"} and not result["pending"]
    seq, rec, joint = arms["sequential"], arms["recommended"], arms["joint"]
    assert len(seq["R"]) == len(rec["R"]) == 3
    bounds = SCALES["smoke"].bounds
    # Plain fine-tuning learns each task, then loses the earlier ones.
    assert min(seq["diagonal"].values()) >= 50
    assert seq["BWT"] <= bounds["sequential_bwt"]
    # The recommended combination keeps them, close to retraining on everything.
    assert rec["BWT"] >= bounds["bwt"]
    assert rec["gap_closure"] >= bounds["gap_closure"]
    assert rec["AA"] > seq["AA"] + 30
    assert joint["AA"] > seq["AA"]
    # Each update trains on as many tokens as the first, retraining on all three tasks on about three times that.
    assert rec["cost"]["tokens"]["last"] < 0.5
    assert all(check["met"] for check in result["bound_checks"]), result["bound_checks"]
    # Every final model is also scored on held-out wordings, next to its held-out-name accuracy.
    for arm in arms.values():
        wording = arm["heldout_wording"]
        assert set(wording["wording"]) == set(wording["names"]) == set(result["tasks"])
        assert wording["names_mean"] == pytest.approx(arm["AA"])
    assert "Held-out names vs held-out wordings" in (tmp_path / "continual_smoke.md").read_text()
