import pytest
from pydantic import ValidationError

from clm_lib.drift.config import DetectorSettings, DriftConfig


def test_every_detector_has_a_section_and_registered_class():
    from clm_lib.drift import available_detectors

    sections = DriftConfig().detector_settings()
    assert set(sections) == set(available_detectors())
    assert all(isinstance(s, DetectorSettings) for s in sections.values())


def test_defaults_say_what_triggers():
    cfg = DriftConfig()
    assert cfg.perplexity.trigger is False  # alert only
    assert cfg.embedding_mmd.trigger and cfg.concept.trigger
    assert cfg.volume.min_new_rows == 2000


def test_bad_values_are_refused():
    with pytest.raises(ValidationError):
        DriftConfig(text_stats={"alpha": 1.5})
    with pytest.raises(ValidationError):
        DriftConfig(task_mix={"typo": 1})


def test_default_alphas_keep_the_whole_policy_at_five_percent_false_alarms():
    cfg = DriftConfig()
    assert cfg.false_alarm_bound == pytest.approx(0.05)  # perplexity (alert only) is not counted
    cfg.perplexity.trigger = True
    assert cfg.false_alarm_bound == pytest.approx(0.10)
