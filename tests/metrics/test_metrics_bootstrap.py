"""Bootstrap intervals: equal to a naive resampling loop, seeded, sensible coverage of the estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal import metrics as M
from focalcal.metrics import BootstrapResult, bootstrap_ci


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    n, k = 300, 5
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    z[torch.arange(n), y] += 2.0
    return z * 2, y


@pytest.mark.parametrize(
    "fn, kw",
    [
        (M.ece, {}),
        (M.ece, {"n_bins": 7, "norm": "l2"}),
        (M.adaptive_ece, {"n_bins": 10}),
        (M.mce, {}),
        (M.classwise_ece, {"n_bins": 15}),
        (M.calibration_error, {"binning": "equal_mass", "norm": "l2", "debias": True, "n_bins": 5}),
        (M.nll, {}),
        (M.brier_score, {}),
        (M.error_rate, {}),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_vectorised_bootstrap_equals_naive_loop(data, fn, kw):
    z, y = data
    res = bootstrap_ci(fn, logits=z, labels=y, n_boot=40, seed=7, method="percentile", **kw)
    idx = torch.randint(0, len(y), (40, len(y)), generator=torch.Generator().manual_seed(7))
    naive = np.array([fn(logits=z[i], labels=y[i], **kw) for i in idx])
    np.testing.assert_allclose(res.samples, naive, rtol=0, atol=1e-7)
    assert res.estimate == fn(logits=z, labels=y, **kw)
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert res.low == pytest.approx(lo, abs=1e-7) and res.high == pytest.approx(hi, abs=1e-7)


def test_seeded_and_reproducible(data):
    z, y = data
    a = bootstrap_ci(M.ece, logits=z, labels=y, n_boot=50, seed=3)
    b = bootstrap_ci("ece", logits=z.numpy(), labels=y.numpy(), n_boot=50, seed=3)
    c = bootstrap_ci(M.ece, logits=z, labels=y, n_boot=50, seed=4)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert isinstance(a, BootstrapResult) and a.n_boot == 50 and a.samples.shape == (50,)
    assert set(a.to_dict()) == {"estimate", "low", "high", "std", "n_boot", "alpha", "seed"}


def test_interval_brackets_estimate_and_narrows_with_alpha(data):
    z, y = data
    wide = bootstrap_ci(M.nll, logits=z, labels=y, n_boot=400, alpha=0.05)
    narrow = bootstrap_ci(M.nll, logits=z, labels=y, n_boot=400, alpha=0.5)
    assert wide.low <= wide.estimate <= wide.high
    assert wide.low <= narrow.low <= narrow.high <= wide.high
    # bootstrap standard error of a mean ~ sample std / sqrt(N)
    per = torch.nn.functional.cross_entropy(z.double(), y, reduction="none")
    assert wide.std == pytest.approx(float(per.std() / np.sqrt(len(y))), rel=0.2)


def test_summary_bootstrap_all_keys_share_resamples(data):
    z, y = data
    res = bootstrap_ci(M.calibration_summary, logits=z, labels=y, n_boot=30, seed=1, n_bins=10)
    assert set(res) == set(M.SUMMARY_KEYS)
    s = M.calibration_summary(logits=z, labels=y, n_bins=10)
    for key, r in res.items():
        assert r.estimate == s[key]
    one = bootstrap_ci(M.classwise_ece, logits=z, labels=y, n_boot=30, seed=1, n_bins=10)
    np.testing.assert_allclose(res["classwise_ece"].samples, one.samples, atol=1e-12)


def test_generic_callable_fallback(data):
    z, y = data

    def top2_gap(*, probs, labels):  # a user metric: called with probabilities computed once
        s = torch.as_tensor(probs).topk(2, dim=1).values
        return float((s[:, 0] - s[:, 1]).mean())

    res = bootstrap_ci(top2_gap, logits=z, labels=y, n_boot=20, seed=2)
    p = torch.softmax(z, 1)
    idx = torch.randint(0, len(y), (20, len(y)), generator=torch.Generator().manual_seed(2))
    naive = [top2_gap(probs=p[i], labels=y[i]) for i in idx]
    np.testing.assert_allclose(res.samples, naive, atol=1e-12)
    assert res.estimate == pytest.approx(top2_gap(probs=p, labels=y))


def test_errors(data):
    z, y = data
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1"):
        bootstrap_ci(M.ece, logits=z, labels=y, n_boot=0)
    with pytest.raises(ValueError, match="alpha must lie in"):
        bootstrap_ci(M.ece, logits=z, labels=y, alpha=1.5)
    with pytest.raises(ValueError, match="unknown metric 'foo'; known:"):
        bootstrap_ci("foo", logits=z, labels=y)
    with pytest.raises(ValueError, match="exactly one of logits= or probs="):
        bootstrap_ci(M.ece, labels=y)
    with pytest.raises(ValueError, match="n_bins"):
        bootstrap_ci(M.ece, logits=z, labels=y, n_bins=0)
