"""fault_point is a no-op unless CLM_FAULT_AT names it; then it dies (or raises) at the N-th hit."""

import signal
import subprocess
import sys

import pytest

from clm_lib.faults import InjectedFault, fault_point


def test_unset_or_other_points_do_nothing(monkeypatch):
    monkeypatch.delenv("CLM_FAULT_AT", raising=False)
    fault_point("test.unset")
    monkeypatch.setenv("CLM_FAULT_AT", "test.other")
    monkeypatch.setenv("CLM_FAULT_MODE", "raise")
    fault_point("test.not_named")


def test_raise_mode_fires_at_the_nth_hit_only(monkeypatch):
    monkeypatch.setenv("CLM_FAULT_AT", "test.elsewhere, test.third@3")
    monkeypatch.setenv("CLM_FAULT_MODE", "raise")
    fault_point("test.third")
    fault_point("test.third")
    with pytest.raises(InjectedFault, match=r"fault injected at test\.third"):
        fault_point("test.third")
    fault_point("test.third")  # the 4th hit is not the 3rd


def test_kill_mode_sigkills_the_process():
    code = "from clm_lib.faults import fault_point; fault_point('test.kill'); print('survived')"
    env = {"CLM_FAULT_AT": "test.kill", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "survived" not in done.stdout
    assert "fault injected at test.kill" in done.stderr
