"""Smooth ECE: hand-derived values, FFT path vs direct kernel sums, and relplot as an oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal.metrics import smooth_ece
from focalcal.metrics.smooth import smooth_ece_at, smooth_ece_from_confidences


def _binary(conf, correct):
    conf = torch.as_tensor(conf, dtype=torch.float64)
    return torch.stack([conf, 1 - conf], 1), torch.where(torch.as_tensor(correct), 0, 1)


@pytest.mark.parametrize("c", [0.55, 0.8, 0.97])
def test_constant_confidence_always_right(c):
    # r_i = 1 - c for every sample; int_0^1 K(t, c) dt = 1, so smECE_sigma = 1 - c for every sigma,
    # and the fixed point is sigma* = 1 - c
    probs, labels = _binary([c] * 50, [True] * 50)
    val, sigma = smooth_ece(probs=probs, labels=labels, return_sigma=True)
    assert val == pytest.approx(1 - c, abs=1e-9)
    assert sigma == pytest.approx(1 - c, abs=2e-5)
    for s in (0.01, 0.1, 0.5):
        assert smooth_ece(probs=probs, labels=labels, sigma=s) == pytest.approx(1 - c, abs=1e-9)


def test_constant_confidence_always_wrong():
    probs, labels = _binary([0.7] * 20, [False] * 20)
    assert smooth_ece(probs=probs, labels=labels) == pytest.approx(0.7, abs=1e-9)


def test_opposite_residuals_cancel_only_when_close():
    # equal and opposite residuals at the same confidence cancel exactly
    probs, labels = _binary([0.6, 0.6], [True, False])  # residuals +0.4 and -0.6 -> mean -0.1
    assert smooth_ece(probs=probs, labels=labels, sigma=0.05) == pytest.approx(0.1, abs=1e-9)
    # far apart (0.55 vs 0.95, +/-) they barely cancel at a small bandwidth
    probs, labels = _binary([0.55, 0.95], [True, False])  # residuals +0.45, -0.95
    v = smooth_ece(probs=probs, labels=labels, sigma=0.02)
    assert v == pytest.approx((0.45 + 0.95) / 2, abs=1e-6)


def test_perfectly_calibrated_data_is_near_zero_and_monotone_in_sigma():
    g = torch.Generator().manual_seed(0)
    f = 0.5 + 0.5 * torch.rand(20000, generator=g, dtype=torch.float64)
    y = (torch.rand(20000, generator=g, dtype=torch.float64) < f).double()
    val, sigma = smooth_ece_from_confidences(f, y)
    assert 0 <= val < 0.02 and val == pytest.approx(sigma, abs=1e-3)
    vals = [smooth_ece_at(f, y - f, s) for s in (0.005, 0.02, 0.05, 0.2, 0.6)]
    assert all(a >= b - 1e-9 for a, b in zip(vals, vals[1:]))


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.4])
def test_fft_path_matches_direct_kernel_sums(sigma):
    g = torch.Generator().manual_seed(1)
    f = torch.rand(300, generator=g, dtype=torch.float64)
    y = (torch.rand(300, generator=g, dtype=torch.float64) < f**2).double()
    fast = smooth_ece_at(f, y - f, sigma)
    direct = smooth_ece_at(f, y - f, sigma, exact=True)
    assert fast == pytest.approx(direct, abs=2e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_relplot(seed, monkeypatch):
    relplot = pytest.importorskip("relplot")
    # relplot integrates on a 200-point mesh by default (a ~1e-3 discretisation error of its own, which
    # shrinks towards our value as the mesh is refined); compare against a fine mesh
    monkeypatch.setattr(relplot.config, "smECE_mesh_pts", 20000)
    g = torch.Generator().manual_seed(seed)
    n, k = 2000, 10
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g) * (1 + seed)
    z[torch.arange(n), y] += 2.0
    p = torch.softmax(z.double(), 1)
    ours, sigma = smooth_ece(probs=p, labels=y, return_sigma=True)
    conf, correct = relplot.multiclass_logits_to_confidences(p.numpy(), y.numpy(), probs=True)
    ref = relplot.smECE(conf, correct)
    # relplot bisects only 10 times (sigma to ~1e-3): agree to ~1e-3 at the automatic bandwidth
    assert ours == pytest.approx(ref, abs=2e-3)
    assert ours == pytest.approx(sigma, abs=1e-4)
    for s in (0.05, 0.1):
        ref_s = relplot.smECE_sigma(conf, correct, s)
        assert smooth_ece(probs=p, labels=y, sigma=s) == pytest.approx(ref_s, abs=3e-4)


def test_errors():
    probs, labels = _binary([0.7], [True])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        smooth_ece(probs=probs, labels=labels, sigma=0.0)
    with pytest.raises(ValueError, match="exactly one of"):
        smooth_ece(labels=labels)
    assert 0 <= smooth_ece(logits=torch.randn(40, 3), labels=torch.randint(0, 3, (40,))) <= 1
    assert np.isfinite(smooth_ece(probs=probs, labels=labels))
