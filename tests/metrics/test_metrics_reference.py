"""Agreement with independent implementations: torchmetrics (binned calibration error), scikit-learn
(log loss, Brier score, calibration curve) and torch (cross-entropy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.functional.classification.calibration_error import _ce_compute

from focalcal.metrics import brier_score, calibration_summary, ece, error_rate, mce, nll, reliability_bins

BINS = (5, 10, 15, 20)


@pytest.mark.parametrize("n_bins", BINS)
@pytest.mark.parametrize("norm", ["l1", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_random_logits(seed, n_bins, norm, gen):
    z, y = gen.random_logits(seed, n=1500, k=10, scale=1.0 + seed)
    ours = ece(logits=z, labels=y, n_bins=n_bins, norm=norm)
    ref = float(multiclass_calibration_error(z, y, num_classes=10, n_bins=n_bins, norm=norm))
    assert ours == pytest.approx(ref, abs=1e-6)
    if norm == "max":
        assert mce(logits=z, labels=y, n_bins=n_bins) == ours


@pytest.mark.parametrize("n_bins", BINS)
@pytest.mark.parametrize("norm", ["l1", "max"])
@pytest.mark.parametrize("seed", [3, 4])
def test_matches_torchmetrics_real_looking_logits(seed, n_bins, norm, gen):
    z, y = gen.real_looking_logits(seed)
    conf = torch.softmax(z, 1).max(1).values
    assert (conf < 1).all()  # exact 1.0 is covered by the test below (torchmetrics bins it apart)
    ours = ece(logits=z, labels=y, n_bins=n_bins, norm=norm)
    ref = float(multiclass_calibration_error(z, y, num_classes=10, n_bins=n_bins, norm=norm))
    assert ours == pytest.approx(ref, abs=1e-6)
    # probabilities in, same answer
    p = torch.softmax(z, 1)
    assert ece(probs=p, labels=y, n_bins=n_bins, norm=norm) == pytest.approx(ref, abs=1e-6)


def _tm_closed_last_bin(conf: torch.Tensor, correct: torch.Tensor, n_bins: int, norm: str) -> float:
    """torchmetrics' own binning code with the top edge moved just above 1.0, i.e. with the last bin
    closed at 1 (torchmetrics otherwise gives confidence == 1.0 an extra bin of its own)."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32)
    edges[-1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    return float(_ce_compute(conf.float(), correct.float(), edges, norm=norm))


@pytest.mark.parametrize("n_bins", BINS)
@pytest.mark.parametrize("norm", ["l1", "max"])
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_matches_torchmetrics_binning_with_ties_and_exact_ones(seed, n_bins, norm, gen):
    z, y = gen.tied_saturated_logits(seed)
    p = torch.softmax(z, 1)
    conf, pred = p.max(1)
    assert (conf == 1.0).sum() > 100 and ((conf == 1.0) & (pred != y)).sum() > 50  # wrong at confidence 1
    assert (conf == 0.5).sum() > 50  # exactly on an edge for n_bins 10 and 20
    assert len(torch.unique(conf)) < 200  # heavy ties: ~2000 rows, < 200 distinct confidences
    ref = _tm_closed_last_bin(conf, (pred == y), n_bins, norm)
    assert ece(logits=z, labels=y, n_bins=n_bins, norm=norm) == pytest.approx(ref, abs=1e-6)
    # and where no confidence is exactly 1.0 the public torchmetrics function agrees too
    keep = conf < 1.0
    ref_pub = float(multiclass_calibration_error(z[keep], y[keep], num_classes=5, n_bins=n_bins, norm=norm))
    assert ece(logits=z[keep], labels=y[keep], n_bins=n_bins, norm=norm) == pytest.approx(ref_pub, abs=1e-6)


def test_exact_one_stays_in_last_bin():
    """A confidence of exactly 1.0 is in the last bin, together with the other top confidences
    (torchmetrics 1.x puts it in an extra bin of its own; the metric's definition has n_bins bins)."""
    probs = torch.tensor([[0.05, 0.95], [0.0, 1.0]])
    labels = torch.tensor([1, 0])  # 0.95 right, 1.0 wrong
    bins = reliability_bins(probs=probs, labels=labels, n_bins=15)
    assert bins.counts.tolist() == [0] * 14 + [2]
    # one bin: accuracy 0.5, mean confidence 0.975 -> ECE = MCE = 0.475 (separate bins would give 0.525 / 1.0)
    assert ece(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.475, abs=1e-7)
    assert mce(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.475, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_nll_matches_sklearn_and_torch(seed, gen):
    z, y = gen.random_logits(seed, n=1000, k=7, scale=4.0)
    p = torch.softmax(z.double(), 1)
    ref = log_loss(y.numpy(), p.numpy(), labels=list(range(7)))
    assert nll(logits=z, labels=y) == pytest.approx(ref, rel=1e-6)
    assert nll(probs=p, labels=y) == pytest.approx(ref, rel=1e-12)
    ref_t = float(torch.nn.functional.cross_entropy(z.double(), y))
    assert nll(logits=z, labels=y) == pytest.approx(ref_t, rel=1e-6)
    assert nll(logits=z.double(), labels=y) == pytest.approx(ref_t, rel=1e-12)


def test_nll_from_logits_does_not_underflow():
    # p_y = softmax underflows to 0 in float32 (margin 200), the log-softmax does not
    z = torch.tensor([[200.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([1, 0])
    assert nll(logits=z, labels=y) == pytest.approx((200.0 + np.log(2.0)) / 2, rel=1e-6)
    # from probabilities an exact 0 is clamped at the float32 tiny, documented: -log(1.1755e-38) = 87.34
    p = torch.softmax(z, 1)
    assert nll(probs=p, labels=y) == pytest.approx((-np.log(np.finfo(np.float32).tiny) + np.log(2.0)) / 2)


def test_brier_matches_sklearn_binary():
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(500, generator=g, dtype=torch.float64)
    y = (torch.rand(500, generator=g, dtype=torch.float64) < p1).long()
    probs = torch.stack([1 - p1, p1], 1)
    ref = brier_score_loss(y.numpy(), p1.numpy())
    # ours sums over both classes: (p1 - y)^2 + ((1 - p1) - (1 - y))^2 = 2 (p1 - y)^2
    assert brier_score(probs=probs, labels=y) == pytest.approx(2 * ref, rel=1e-12)


def test_brier_multiclass_matches_direct_formula(gen):
    z, y = gen.random_logits(3, n=800, k=6)
    p = torch.softmax(z.double(), 1)
    ref = float(((p - torch.nn.functional.one_hot(y, 6)) ** 2).sum(1).mean())
    assert brier_score(logits=z, labels=y) == pytest.approx(ref, rel=1e-6)
    assert brier_score(logits=z.double(), labels=y) == pytest.approx(ref, rel=1e-12)


def test_reliability_bins_match_sklearn_calibration_curve():
    # binary, all p1 > 0.5 so the top label is class 1 and top-label confidence = p1;
    # avoid values on bin edges (sklearn bins (lo, hi], we bin [lo, hi))
    g = torch.Generator().manual_seed(1)
    p1 = 0.5 + 0.5 * torch.rand(3000, generator=g, dtype=torch.float64) * 0.999 + 1e-4
    y = (torch.rand(3000, generator=g, dtype=torch.float64) < p1**2).long()
    probs = torch.stack([1 - p1, p1], 1)
    bins = reliability_bins(probs=probs, labels=y, n_bins=10)
    prob_true, prob_pred = calibration_curve(y.numpy(), p1.numpy(), n_bins=10, strategy="uniform")
    ne = bins.counts > 0
    np.testing.assert_allclose(bins.accuracy[ne], prob_true, atol=1e-12)
    np.testing.assert_allclose(bins.mean_confidence[ne], prob_pred, atol=1e-12)


def test_error_rate_matches_argmax(gen):
    z, y = gen.random_logits(9, n=1000, k=4)
    assert error_rate(logits=z, labels=y) == pytest.approx(float((z.argmax(1) != y).double().mean()), abs=0)


def test_summary_equals_individual_metrics(gen):
    from focalcal.metrics import adaptive_ece, classwise_ece

    z, y = gen.real_looking_logits(11, n=1200, k=8)
    s = calibration_summary(logits=z, labels=y, n_bins=12)
    assert set(s) == {"error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier"}
    assert all(isinstance(v, float) for v in s.values())
    assert s["ece"] == ece(logits=z, labels=y, n_bins=12)
    assert s["mce"] == mce(logits=z, labels=y, n_bins=12)
    assert s["adaptive_ece"] == adaptive_ece(logits=z, labels=y, n_bins=12)
    assert s["classwise_ece"] == pytest.approx(classwise_ece(logits=z, labels=y, n_bins=12), abs=1e-15)
    assert s["nll"] == nll(logits=z, labels=y)
    assert s["brier"] == brier_score(logits=z, labels=y)
    assert s["error"] == error_rate(logits=z, labels=y)
    # numpy in, same numbers
    assert calibration_summary(logits=z.numpy(), labels=y.numpy(), n_bins=12) == s
