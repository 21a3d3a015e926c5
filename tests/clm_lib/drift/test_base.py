"""clm_lib/drift/base.py: the result type, the detector shape, and the registry of detectors by name."""

import math

import numpy as np
import pytest

from clm_lib.drift import (
    DETECTORS,
    Detector,
    DriftResult,
    Status,
    available_detectors,
    get_detector,
    jsonable,
    register_detector,
)
from clm_lib.drift.window import TextWindow
from clm_lib.errors import ConfigError


@pytest.fixture
def always():
    class Always(Detector):
        def _check(self, reference, current, context):
            return self.result(Status.OK, True, "always drifts")

    register_detector(name="always", detector_cls=Always)
    yield Always
    DETECTORS.unregister("always")


def test_builtins_are_registered_under_their_config_names():
    assert available_detectors() == ["concept", "embedding_mmd", "perplexity", "task_mix", "text_stats"]
    assert get_detector("task_mix").name == "task_mix"
    assert get_detector("task_mix").__module__ == "clm_lib.drift.task_mix"


def test_unknown_name_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown drift detector 'nope'; known: concept, embedding_mmd"):
        get_detector("nope")


def test_a_plugin_registers_like_a_builtin(always):
    assert get_detector("always") is always and always.name == "always"
    assert "always" in available_detectors()
    res = always().check(TextWindow.from_lists(["a"] * 200), TextWindow.from_lists(["b"] * 200))
    assert isinstance(res, DriftResult) and res.drift and res.duration_s >= 0


def test_clashes_and_non_detectors_are_refused(always):
    with pytest.raises(ValueError, match="already registered"):
        register_detector(name="always", detector_cls=type("Other", (always,), {}))
    with pytest.raises(ValueError, match="already registered"):
        register_detector(name="task_mix", detector_cls=always)
    with pytest.raises(TypeError, match="not a Detector subclass"):
        register_detector(name="not_a_detector", detector_cls=object)


def test_min_samples_guard_gives_insufficient_data():
    res = get_detector("task_mix")().check(TextWindow.from_lists(["a"] * 5), TextWindow.from_lists(["b"] * 5))
    assert res.status == Status.INSUFFICIENT and res.drift is None and "at least 100" in res.explanation


def test_a_failing_detector_gives_an_error_result_not_an_exception():
    class Broken(Detector):
        name = "broken"

        def _check(self, reference, current, context):
            raise RuntimeError("boom")

    res = Broken().check(TextWindow.from_lists(["a"] * 200), TextWindow.from_lists(["b"] * 200))
    assert res.status == Status.ERROR and res.drift is None and "RuntimeError: boom" in res.explanation


def test_jsonable_turns_numpy_and_non_finite_values_into_json_values():
    value = {"a": np.float32(0.5), "b": np.array([[1, 2], [3, 4]]), "c": (np.int64(3), math.nan),
             "d": np.bool_(True), "e": [math.inf, np.float64("nan")], 7: np.array(2.5)}
    assert jsonable(value) == {"a": 0.5, "b": [[1, 2], [3, 4]], "c": [3, None], "d": True, "e": [None, None],
                               "7": 2.5}
    assert type(jsonable(np.int64(3))) is int and type(jsonable(np.float32(1.5))) is float
