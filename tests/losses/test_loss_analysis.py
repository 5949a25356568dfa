"""g(p, gamma) and the thresholds where it equals 1 (Mukhoti et al. 2020, Sec. 4 / Fig. 4)."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from focalcal.losses import g_factor, gamma_threshold, p_threshold


def test_paper_threshold_values():
    assert g_factor(0.2, 4.85) == pytest.approx(1.0, abs=1e-3)
    assert g_factor(0.25, 3.07) == pytest.approx(1.0, abs=1e-3)
    assert gamma_threshold(0.2) == pytest.approx(4.85, abs=0.01)  # 4.8506
    assert gamma_threshold(0.25) == pytest.approx(3.07, abs=0.01)  # 3.0702


@pytest.mark.parametrize("p", [0.01, 0.1, 0.2, 0.25, 0.3, 0.45])
def test_gamma_threshold_lambert_w_matches_brent(p):
    root = brentq(lambda g: g_factor(p, g) - 1.0, 1e-3, 1e4, xtol=1e-12)
    assert gamma_threshold(p) == pytest.approx(root, rel=1e-8)
    assert g_factor(p, gamma_threshold(p)) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("gamma", [0.1, 1.0, 3.0, 4.85, 5.0, 20.0])
def test_p_threshold_is_the_unique_crossing(gamma):
    p_star = p_threshold(gamma)
    assert g_factor(p_star, gamma) == pytest.approx(1.0, abs=1e-9)
    grid = np.linspace(1e-4, 1 - 1e-4, 20001)
    diff = g_factor(grid, gamma) - 1.0
    crossings = np.count_nonzero(np.diff(np.sign(diff)) != 0)
    assert crossings == 1
    assert np.all(diff[grid < p_star * 0.99] > 0) and np.all(diff[grid > p_star * 1.01] < 0)


def test_known_p_thresholds_and_inverse_relation():
    assert p_threshold(1.0) == pytest.approx(1 / math.e, rel=1e-9)
    assert p_threshold(3.0) == pytest.approx(0.25258, abs=1e-5)
    assert p_threshold(gamma_threshold(0.2)) == pytest.approx(0.2, rel=1e-8)


def test_g_factor_formula_ends_and_types():
    p, gamma = 0.3, 2.0
    expected = (1 - p) ** gamma - gamma * p * (1 - p) ** (gamma - 1) * math.log(p)
    assert g_factor(p, gamma) == pytest.approx(expected, rel=1e-12)
    assert isinstance(g_factor(p, gamma), float)
    arr = g_factor(np.array([0.0, 0.3, 1.0]), 0.5)
    assert isinstance(arr, np.ndarray)
    np.testing.assert_allclose(arr, [1.0, g_factor(0.3, 0.5), 0.0])
    assert g_factor(1.0, 0.0) == 1.0 and g_factor(1.0, 3.0) == 0.0
    t = g_factor(torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    assert isinstance(t, torch.Tensor)
    torch.testing.assert_close(t, torch.tensor(arr))
    assert np.all(np.isfinite(g_factor(np.linspace(0, 1, 101), 0.3)))


@pytest.mark.parametrize(
    "call",
    [
        lambda: g_factor(1.5, 1.0),
        lambda: g_factor(0.5, -1.0),
        lambda: g_factor(torch.tensor([-0.1]), 1.0),
        lambda: p_threshold(0.0),
        lambda: gamma_threshold(0.5),
        lambda: gamma_threshold(0.0),
    ],
)
def test_errors(call):
    with pytest.raises(ValueError):
        call()
