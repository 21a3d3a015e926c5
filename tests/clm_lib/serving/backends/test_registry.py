"""The serving backend registry (clm_lib/serving/backends/__init__.py): ``serving.backend`` picks one by name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clm_lib.config import load_config
from clm_lib.errors import ConfigError
from clm_lib.serving.backends import BACKENDS, ServingBackend, available_backends, get_backend, register_backend


class Recording(ServingBackend):
    """A backend a user's plugin might bring: it only remembers what it was built with."""

    def __init__(self, cfg, **kwargs):
        self.cfg, self.kwargs = cfg, kwargs

    deploy = set_weights = weights = status = live_metrics = stop = smoke_test = lambda *a, **k: None


@pytest.fixture
def recording(request):
    register_backend(name="recording", backend_cls=Recording)
    request.addfinalizer(lambda: BACKENDS.unregister("recording"))
    return Recording


def test_a_plugin_backend_is_chosen_by_serving_backend(tmp_path, recording):
    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__SERVING__BACKEND": "recording"})
    backend = get_backend(cfg, probe=1)
    assert isinstance(backend, recording) and backend.cfg is cfg and backend.kwargs == {"probe": 1}
    assert recording.name == "recording" and available_backends() == ["kubernetes", "local", "recording"]


def test_an_unknown_backend_names_the_field_and_the_known_ones(tmp_path):
    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__SERVING__BACKEND": "nomad"})
    with pytest.raises(ConfigError, match=r"^serving\.backend: unknown backend 'nomad'; known: kubernetes, local$"):
        get_backend(cfg)


def test_builtins_register_like_plugins_and_local_never_imports_kubernetes():
    code = (
        "import sys\n"
        "from clm_lib.serving.backends import BACKENDS\n"
        "local = BACKENDS.get('local')\n"
        "assert local.name == 'local' and local.__module__ == 'clm_lib.serving.backends.local', local\n"
        "assert 'clm_lib.serving.backends.kubernetes' not in sys.modules\n"
        "assert not any(m == 'kubernetes' or m.startswith('kubernetes.') for m in sys.modules)\n"
        "assert BACKENDS.get('kubernetes').name == 'kubernetes'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
