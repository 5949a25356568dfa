"""Hypothesis properties: ranges, orderings, permutation invariance, agreement with a naive reference."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcal import metrics as M

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def problems(draw, max_n=60, max_k=6, tied=False):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(2, max_k))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if tied:  # coarse integer logits: many exactly tied confidences
        z = torch.randint(-2, 3, (n, k), generator=g).double()
    else:
        z = torch.randn(n, k, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    y = torch.randint(0, k, (n,), generator=g)
    n_bins = draw(st.integers(1, 25))
    return z, y, n_bins


def _naive_ece(conf, correct, n_bins, equal_mass=False):
    """Per-bin Python loop reference (as the original code, with its faults fixed)."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    n = len(conf)
    if equal_mass:  # cut at ceil(b N / n_bins); a cut inside a tie block moves to its nearer end (lower on a draw)
        srt = np.sort(conf)
        cuts = []
        for b in range(1, n_bins):
            r = -(-b * n // n_bins)
            if r < n and srt[r - 1] == srt[r]:
                a, e = np.searchsorted(srt, srt[r], "left"), np.searchsorted(srt, srt[r], "right")
                r = a if r - a <= e - r else e
            cuts.append(r)
        first = np.searchsorted(srt, conf, side="left")
        idx = np.array([sum(c <= f for c in cuts) for f in first], dtype=int)
    else:
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).numpy()
        idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            gap = abs(correct[m].mean() - conf[m].mean())
            total += gap * m.sum() / n
            worst = max(worst, gap)
    return total, worst


def _naive_classwise(p, y, n_bins):
    p = np.asarray(p, float)
    n, k = p.shape
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).numpy()
    out = 0.0
    for c in range(k):
        idx = np.clip(np.searchsorted(edges, p[:, c], side="right") - 1, 0, n_bins - 1)
        for b in range(n_bins):
            m = idx == b
            if m.any():
                out += abs((y[m] == c).mean() - p[m, c].mean()) * m.sum() / n
    return out / k


@SETTINGS
@given(problems())
def test_ranges_and_orderings(prob):
    z, y, n_bins = prob
    s = M.calibration_summary(logits=z, labels=y, n_bins=n_bins)
    for key in ("error", "ece", "adaptive_ece", "classwise_ece", "mce"):
        assert 0.0 <= s[key] <= 1.0, key
    assert 0.0 <= s["brier"] <= 2.0 and s["nll"] >= 0.0
    assert s["mce"] >= s["ece"] - 1e-12
    l2 = M.ece(logits=z, labels=y, n_bins=n_bins, norm="l2")
    assert s["ece"] - 1e-12 <= l2 <= s["mce"] + 1e-12  # l1 <= l2 <= max for weighted means
    assert M.calibration_error(logits=z, labels=y, n_bins=n_bins, norm="l2", debias=True) <= l2 + 1e-12


@SETTINGS
@given(problems(tied=True))
def test_matches_naive_loops_with_ties(prob):
    # probabilities in, so both sides bin exactly the same confidences (with ties, equal-mass bins are
    # sensitive to 1-ulp differences between softmax implementations; softmax agreement is tested against
    # torchmetrics)
    z, y, n_bins = prob
    p = torch.softmax(z, 1)
    conf, pred = p.max(1)
    correct = (pred == y).numpy()
    e, m = _naive_ece(conf.numpy(), correct, n_bins)
    a, _ = _naive_ece(conf.numpy(), correct, n_bins, equal_mass=True)
    assert abs(M.ece(probs=p, labels=y, n_bins=n_bins) - e) < 1e-12
    assert abs(M.mce(probs=p, labels=y, n_bins=n_bins) - m) < 1e-12
    assert abs(M.adaptive_ece(probs=p, labels=y, n_bins=n_bins) - a) < 1e-12
    assert abs(M.classwise_ece(probs=p, labels=y, n_bins=n_bins) - _naive_classwise(p, y.numpy(), n_bins)) < 1e-12
    # from logits the same up to softmax rounding, away from ties
    assert abs(M.ece(logits=z, labels=y, n_bins=n_bins) - e) < 1e-6 or len(torch.unique(conf)) < len(conf)


@SETTINGS
@given(problems(tied=True), st.integers(0, 1000))
def test_row_permutation_invariance(prob, pseed):
    z, y, n_bins = prob
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(pseed))
    a = M.calibration_summary(logits=z, labels=y, n_bins=n_bins)
    b = M.calibration_summary(logits=z[perm], labels=y[perm], n_bins=n_bins)
    for key in a:
        assert abs(a[key] - b[key]) < 1e-12, key
    ba = M.reliability_bins(logits=z, labels=y, n_bins=n_bins, binning="equal_mass")
    bb = M.reliability_bins(logits=z[perm], labels=y[perm], n_bins=n_bins, binning="equal_mass")
    assert (ba.counts == bb.counts).all()
    np.testing.assert_array_equal(ba.edges, bb.edges)


@SETTINGS
@given(problems(max_n=40))
def test_bins_are_consistent(prob):
    z, y, n_bins = prob
    for binning in ("equal_width", "equal_mass"):
        st_ = M.reliability_bins(logits=z, labels=y, n_bins=n_bins, binning=binning)
        assert st_.counts.sum() == len(y)  # nobody dropped
        assert st_.edges.shape == (n_bins + 1,) and st_.edges[0] == 0.0 and st_.edges[-1] == 1.0
        assert np.all(np.diff(st_.edges) >= 0)
        for arr in (st_.mean_confidence, st_.accuracy):
            assert np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1 + 1e-12).all()
        ne = st_.counts > 0
        # every non-empty bin's mean confidence lies within its edges
        lo, hi = st_.edges[:-1][ne], st_.edges[1:][ne]
        assert (st_.mean_confidence[ne] >= lo - 1e-12).all() and (st_.mean_confidence[ne] <= hi + 1e-12).all()
