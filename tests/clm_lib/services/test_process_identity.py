import subprocess
import sys
import time

from clm_lib.services.process_identity import is_same, start_mark


def test_a_mark_names_one_process_and_survives_a_wall_clock_step():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mark = start_mark(child.pid)
        assert mark is not None and mark.startswith("ticks:")  # Linux: ticks since boot, not the wall clock
        time.sleep(0.05)
        assert start_mark(child.pid) == mark and is_same(child.pid, mark)
        assert not is_same(child.pid, start_mark(1))  # another process's mark
    finally:
        child.kill()
        child.wait()
    assert start_mark(child.pid) is None and not is_same(child.pid, mark)  # gone


def test_a_mark_reads_a_command_name_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "a b) (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)  # exec'd: /proc/<pid>/stat now names "a b) (c"
        assert start_mark(child.pid).startswith("ticks:") and is_same(child.pid, start_mark(child.pid))
    finally:
        child.kill()
        child.wait()
