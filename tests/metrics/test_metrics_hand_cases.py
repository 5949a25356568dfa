"""Metric values worked out by hand, and the binning rules (edges, ties, empty bins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focalcal.metrics import (
    BinStats,
    adaptive_ece,
    brier_score,
    calibration_error,
    calibration_summary,
    classwise_ece,
    ece,
    error_rate,
    mce,
    nll,
    reliability_bins,
)


def _binary(conf, correct):
    """Two-class probs whose top-label confidence is ``conf`` (>= 0.5) and labels making it (in)correct."""
    conf = torch.tensor(conf, dtype=torch.float64)
    probs = torch.stack([conf, 1 - conf], 1)
    labels = torch.tensor([0 if c else 1 for c in correct])
    return probs, labels


def test_adaptive_ece_hand_case():
    # confidences 0.6 0.7 0.8 0.9, all correct, 2 equal-mass bins: {0.6, 0.7} and {0.8, 0.9}
    # bin 1: acc 1, conf 0.65 -> gap 0.35; bin 2: acc 1, conf 0.85 -> gap 0.15; AdaECE = (0.35 + 0.15) / 2 = 0.25
    probs, labels = _binary([0.6, 0.7, 0.8, 0.9], [True] * 4)
    assert adaptive_ece(probs=probs, labels=labels, n_bins=2) == pytest.approx(0.25, abs=1e-12)
    bins = reliability_bins(probs=probs, labels=labels, n_bins=2, binning="equal_mass")
    assert bins.counts.tolist() == [2, 2]
    np.testing.assert_allclose(bins.mean_confidence, [0.65, 0.85])
    np.testing.assert_allclose(bins.edges, [0.0, 0.8, 1.0])


def test_binary_095_and_1_share_the_last_bin():
    # 0.95 wrong, 1.0 right: both in the last of 15 bins [14/15, 1]; acc 0.5, conf 0.975 -> ECE 0.475
    probs, labels = _binary([0.95, 1.0], [False, True])
    bins = reliability_bins(probs=probs, labels=labels, n_bins=15)
    assert bins.counts.tolist() == [0] * 14 + [2]
    assert bins.accuracy[-1] == 0.5 and bins.mean_confidence[-1] == pytest.approx(0.975)
    assert ece(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.475, abs=1e-12)


def test_classwise_ece_hand_case():
    # probs [[.6, .3, .1], [.2, .7, .1]], labels [0, 1], 15 bins of width 1/15 (N = 2, K = 3):
    # class 0: p = .6 (bin 9, y=1) and .2 (bin 3, y=0): |1 - .6| / 2 + |0 - .2| / 2 = .2 + .1 = .3
    # class 1: p = .3 (bin 4, y=0) and .7 (bin 10, y=1): |0 - .3| / 2 + |1 - .7| / 2 = .15 + .15 = .3
    # class 2: p = .1 and .1 (both bin 1, y=0): |0 - .1| * 2 / 2 = .1
    # classwise-ECE = (.3 + .3 + .1) / 3 = 0.2333...
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    assert classwise_ece(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.7 / 3, abs=1e-12)


def test_classwise_counts_columns_not_labels_present():
    # same rows padded with a 4th class that never occurs as a label and has probability 0:
    # its calibration error is 0, and the mean is over K = 4 classes -> 0.7 / 4
    probs = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    assert classwise_ece(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.7 / 4, abs=1e-12)


def test_confidence_zero_is_in_first_bin():
    # classwise binning sees p_k = 0 exactly: it must land in bin 0 (the original code put it in bin -1)
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    # class 0: p = 1 (bin 14, y=1) and 0 (bin 0, y=1): |1-1|/2 + |1-0|/2 = 0.5; class 1: 0 (y=0), 1 (y=0): 0.5
    assert classwise_ece(probs=probs, labels=labels, n_bins=15) == pytest.approx(0.5)
    # top-label binning with a confidence of exactly 0 is impossible for K >= 2 (max >= 1/K), but the
    # bin rule is shared: check it directly
    from focalcal.metrics.binning import bin_stats

    st = bin_stats(torch.tensor([0.0, 1.0]), torch.tensor([False, True]), 15, "equal_width")
    assert st.counts[0] == 1 and st.counts[-1] == 1


def test_bin_edges_are_half_open():
    # 0.4 is an edge for 5 bins: it belongs to [0.4, 0.6), not to [0.2, 0.4)
    from focalcal.metrics.binning import bin_stats

    conf = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0])
    st = bin_stats(conf, torch.ones(5, dtype=torch.bool), 5, "equal_width")
    assert st.counts.tolist() == [0, 1, 1, 1, 2]
    assert st.edges.shape == (6,) and st.edges[0] == 0 and st.edges[-1] == 1


def test_equal_mass_ties_are_never_split_and_order_free():
    from focalcal.metrics.binning import bin_stats

    conf = torch.tensor([0.5, 0.7, 0.7, 0.7, 0.7, 0.9], dtype=torch.float64)
    correct = torch.tensor([True, False, True, True, False, True])
    st = bin_stats(conf, correct, 4, "equal_mass")
    # nominal cuts at sorted positions 2, 3, 5; the four 0.7s fill positions 1..4, so the cuts at 2 and 3
    # move to the block's nearer end, position 1 (3 is a draw: the lower end), and the block is one bin
    assert st.counts.tolist() == [1, 0, 4, 1]
    assert st.n_samples == 6
    assert not np.isnan(st.mean_confidence).any() and not np.isnan(st.accuracy).any()
    assert st.accuracy[1] == 0 and st.mean_confidence[1] == 0
    # edges: [0, min of bin 1 (empty -> next bin's lower edge 0.7), 0.7, 0.9, 1]
    np.testing.assert_allclose(st.edges, [0.0, 0.7, 0.7, 0.9, 1.0])
    for seed in range(5):
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        st2 = bin_stats(conf[perm], correct[perm], 4, "equal_mass")
        np.testing.assert_array_equal(st2.counts, st.counts)
        np.testing.assert_array_equal(st2.accuracy, st.accuracy)
        np.testing.assert_array_equal(st2.mean_confidence, st.mean_confidence)


def test_equal_mass_keeps_the_lowest_sample():
    # the original code dropped the lowest-confidence sample; here every sample is counted
    probs, labels = _binary([0.51, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99], [False, True, True, True, True, True, True])
    st = reliability_bins(probs=probs, labels=labels, n_bins=3, binning="equal_mass")
    assert st.counts.tolist() == [3, 2, 2]
    assert st.accuracy[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_more_bins_than_samples(binning):
    probs, labels = _binary([0.55, 0.75, 0.95], [True, False, True])
    st = reliability_bins(probs=probs, labels=labels, n_bins=50, binning=binning)
    assert st.counts.sum() == 3 and (st.counts <= 1).all()
    for arr in (st.mean_confidence, st.accuracy, st.edges, st.gap):
        assert np.isfinite(arr).all()
    assert np.all(np.diff(st.edges) >= 0)
    # one sample per bin: ECE = mean |correct - conf| = (.45 + .75 + .05) / 3
    e = calibration_error(probs=probs, labels=labels, n_bins=50, binning=binning)
    assert e == pytest.approx((0.45 + 0.75 + 0.05) / 3)


def test_single_bin_and_single_sample():
    probs, labels = _binary([0.8], [False])
    assert ece(probs=probs, labels=labels, n_bins=1) == pytest.approx(0.8)
    assert adaptive_ece(probs=probs, labels=labels, n_bins=1) == pytest.approx(0.8)
    assert classwise_ece(probs=probs, labels=labels, n_bins=1) == pytest.approx(0.8)  # |0-.8|, |1-.2| -> .8


def test_mce_hand_case():
    # bins (5): 0.55 right -> [0.4,0.6) gap .45 ; 0.65, 0.7 wrong/right -> [0.6,0.8) acc .5 conf .675 gap .175
    probs, labels = _binary([0.55, 0.65, 0.7], [True, False, True])
    assert mce(probs=probs, labels=labels, n_bins=5) == pytest.approx(0.45)
    assert ece(probs=probs, labels=labels, n_bins=5) == pytest.approx((0.45 + 2 * 0.175) / 3)


def test_l2_and_debiased_hand_case():
    # 5 bins; [0.6, 0.8): conf .7 .7 .7 .7 (acc 3/4); [0.8, 1]: conf .9 .9 (acc 1/2)
    probs, labels = _binary([0.7] * 4 + [0.9] * 2, [True, True, True, False, True, False])
    w = np.array([4 / 6, 2 / 6])
    gap = np.array([0.75 - 0.7, 0.9 - 0.5])
    assert ece(probs=probs, labels=labels, n_bins=5, norm="l2") == pytest.approx(math.sqrt((w * gap**2).sum()))
    var = np.array([0.75 * 0.25 / 3, 0.5 * 0.5 / 1])
    expect = math.sqrt(max((w * (gap**2 - var)).sum(), 0.0))
    got = calibration_error(probs=probs, labels=labels, n_bins=5, norm="l2", debias=True)
    assert got == pytest.approx(expect)


def test_debiased_estimate_clips_at_zero():
    # perfectly calibrated on average but noisy: bias correction exceeds the squared gap -> 0, not NaN
    probs, labels = _binary([0.7] * 10, [True] * 7 + [False] * 3)
    assert calibration_error(probs=probs, labels=labels, n_bins=5, norm="l2", debias=True) == 0.0


def test_nll_brier_error_hand_values():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    # NLL = (-log .25 - log .8) / 2
    assert nll(probs=probs, labels=labels) == pytest.approx((math.log(4) - math.log(0.8)) / 2)
    # Brier row 1: .25 + .5625 + .0625 = .875 ; row 2: .01 + .04 + .01 = .06 -> mean .4675
    assert brier_score(probs=probs, labels=labels) == pytest.approx(0.4675)
    assert error_rate(probs=probs, labels=labels) == pytest.approx(0.5)
    # logits: uniform over 4 classes -> NLL log 4, Brier 3/16 + (3/4)^2 = .75
    z = torch.zeros(3, 4)
    y = torch.tensor([0, 1, 2])
    assert nll(logits=z, labels=y) == pytest.approx(math.log(4))
    assert brier_score(logits=z, labels=y) == pytest.approx(0.75)


def test_argmax_ties_go_to_first_class():
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    assert error_rate(probs=probs, labels=torch.tensor([0, 1])) == 0.5


def test_summary_is_fractions_and_binstats_is_public_data():
    probs, labels = _binary([0.6, 0.7, 0.8, 0.9], [True, False, True, True])
    s = calibration_summary(probs=probs, labels=labels)
    assert 0 <= s["ece"] <= 1 and s["error"] == 0.25
    st = reliability_bins(probs=probs, labels=labels)
    assert isinstance(st, BinStats)
    assert st.counts.dtype == np.int64 and st.edges.dtype == np.float64
    assert st.calibration_error("l1") == s["ece"]
    d = st.to_dict()
    assert set(d) == {"binning", "closed", "edges", "counts", "mean_confidence", "accuracy"}
    import json

    json.dumps(d)
