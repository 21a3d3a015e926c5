from __future__ import annotations

import pytest

from clm_lib.training.data import EpochSampler


def test_epoch_sampler_visits_everything_once_per_epoch_and_resumes():
    sampler = EpochSampler(10, seed=1)
    first, second = sampler.take(10), sampler.take(10)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    a = EpochSampler(7, seed=3)
    a.take(9)
    state = a.state_dict()
    b = EpochSampler(7, seed=3)
    b.load_state_dict(state)
    assert a.take(12) == b.take(12)
    with pytest.raises(ValueError):
        EpochSampler(0, seed=0)
