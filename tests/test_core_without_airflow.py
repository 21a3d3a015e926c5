"""clm_lib's core must import and work in an environment where Airflow cannot be imported.

That no core module names Airflow in an import, at any depth, is read from the source in ``test_import_graph.py``.
"""

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


def test_loading_the_config_imports_no_numerics_and_naming_plugins_imports_no_plugin():
    # Airflow's DAG processor, the CLI and every view load the config: it must stay cheap. The registries list
    # their built-ins by name without importing them (scipy, torch, the Kubernetes client).
    code = (
        "import sys\n"
        "from clm_lib.config import load_config\n"
        "load_config()\n"
        "from clm_lib.drift import available_detectors\n"
        "from clm_lib.serving.backends import available_backends\n"
        "assert available_detectors() and available_backends()\n"
        "heavy = ('numpy', 'pyarrow', 'torch', 'scipy', 'sklearn', 'kubernetes')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
