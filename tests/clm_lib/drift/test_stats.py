import numpy as np
import pytest

from clm_lib.drift.stats import holm, mmd_permutation_test, psi


def test_holm_matches_the_step_down_definition():
    # m=3: sorted p 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), mapped back to input order.
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_psi_is_zero_for_the_same_sample_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-9)
    assert psi(a, a + 0.2) < psi(a, a + 1.0)
    assert psi(a, a + 1.0) > 0.25


def test_psi_handles_discrete_features_with_tied_quantiles():
    a = np.array([1.0] * 900 + [2.0] * 100)
    assert np.isfinite(psi(a, np.array([2.0] * 1000)))


def test_mmd_permutation_test_quiet_on_same_and_fires_on_shift():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(150, 8)), rng.normal(size=(150, 8))
    _, p_same, _ = mmd_permutation_test(x, y, 200, np.random.default_rng(0))
    _, p_shift, _ = mmd_permutation_test(x, y + 0.5, 200, np.random.default_rng(0))
    assert p_same > 0.05
    assert p_shift == pytest.approx(1 / 201)


def test_mmd_false_alarm_rate_is_calibrated():
    rng = np.random.default_rng(2)
    p = [mmd_permutation_test(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)), 99, rng)[1] for _ in range(200)]
    assert np.mean(np.array(p) < 0.05) <= 0.09  # 0.05 nominal; binomial noise on 200 draws
