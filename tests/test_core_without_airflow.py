"""clm_lib's core must import and work in an environment where Airflow cannot be imported."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCK_AIRFLOW = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError("airflow is blocked in this test")
sys.meta_path.insert(0, _Block())
"""


def _core_modules() -> list[str]:
    mods = []
    for path in sorted((REPO / "clm_lib").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts
        if "airflow" in parts[1:] or "migrations" in parts:
            continue
        mods.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods


def test_core_imports_without_airflow():
    mods = _core_modules()
    assert "clm_lib.config" in mods and len(mods) > 10
    code = BLOCK_AIRFLOW + "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_no_core_module_mentions_airflow_imports():
    offenders = []
    for path in (REPO / "clm_lib").rglob("*.py"):
        if "airflow" in path.relative_to(REPO / "clm_lib").parts[:1]:
            continue
        for line in path.read_text().splitlines():
            if line.strip().startswith(("import airflow", "from airflow")):
                offenders.append(f"{path}: {line.strip()}")
    assert offenders == []
