"""The detector registry in clm_lib/drift/__init__.py: one shape, registered by name."""

import pytest

import clm_lib.drift
from clm_lib.drift import (
    Detector,
    DriftResult,
    Status,
    TextWindow,
    available_detectors,
    get_detector,
    register_detector,
)


def test_builtins_are_registered_under_their_config_names():
    assert available_detectors() == ["concept", "embedding_mmd", "perplexity", "task_mix", "text_stats"]
    assert get_detector("task_mix").name == "task_mix"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: concept"):
        get_detector("nope")


def test_registering_a_plugin_and_refusing_clashes(monkeypatch):
    monkeypatch.setattr(clm_lib.drift, "_REGISTRY", dict(clm_lib.drift._REGISTRY))

    @register_detector("always")
    class Always(Detector):
        def _check(self, reference, current, context):
            return self.result(Status.OK, True, "always drifts")

    assert get_detector("always") is Always
    res = Always().check(TextWindow.from_lists(["a"] * 200), TextWindow.from_lists(["b"] * 200))
    assert isinstance(res, DriftResult) and res.drift and res.duration_s >= 0
    with pytest.raises(ValueError, match="already registered"):
        register_detector("always")(type("Other", (Always,), {}))
    with pytest.raises(TypeError):
        register_detector("not_a_detector")(object)


def test_min_samples_guard_gives_insufficient_data():
    res = get_detector("task_mix")().check(TextWindow.from_lists(["a"] * 5), TextWindow.from_lists(["b"] * 5))
    assert res.status == Status.INSUFFICIENT and res.drift is None and "at least 100" in res.explanation
