"""AdaECE's equal-mass bins with tied confidences: a cut inside a tie block moves to the block's nearer end.

Hand cases (tie blocks across one and several cuts, saturated confidences of exactly 1.0), the rule checked
cut by cut on random data (without ties: the plain rank rule ``bin = floor(rank * n_bins / N)``), independence
of the row order, and agreement of the batched (bootstrap) path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal.metrics import adaptive_ece, reliability_bins
from focalcal.metrics.binning import bin_stats, equal_mass_index


def _binary(conf, correct):
    """Two-class probabilities whose top-label confidence is ``conf`` and whose label is right iff
    ``correct``."""
    c = torch.tensor(conf, dtype=torch.float64)
    probs = torch.stack([c, 1 - c], 1)
    labels = torch.where(torch.tensor(correct), 0, 1)
    return probs, labels


def _hand_ece(conf, correct, bins):
    """ECE over an explicit partition: ``bins`` is a list of index lists."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    return sum(len(b) / len(conf) * abs(correct[b].mean() - conf[b].mean()) for b in bins if len(b))


def test_a_saturated_block_across_one_cut_gets_its_own_bin():
    # 12 samples, 2 bins: the nominal cut at sorted position 6 falls inside the seven 1.0s (positions 5..11);
    # their lower end (5) is nearer than their upper end (12), so the cut moves to 5
    conf = [0.55, 0.6, 0.65, 0.7, 0.75] + [1.0] * 7
    correct = [False, True, False, True, False] + [True] * 6 + [False]
    probs, labels = _binary(conf, correct)
    st = reliability_bins(probs=probs, labels=labels, n_bins=2, binning="equal_mass")
    assert st.counts.tolist() == [5, 7]
    assert st.mean_confidence[1] == 1.0 and st.accuracy[1] == pytest.approx(6 / 7)
    expected = _hand_ece(conf, correct, [list(range(5)), list(range(5, 12))])
    assert adaptive_ece(probs=probs, labels=labels, n_bins=2) == pytest.approx(expected, abs=1e-12)


def test_a_block_across_several_cuts():
    # 20 samples, 5 bins: nominal cuts 4, 8, 12, 16; twelve 0.6s fill positions 5..16. The cut at 4 lies
    # outside the block; 8 moves down to 5 (3 < 9); 12 and 16 move up to 17 (5 < 7, 1 < 11)
    conf = [0.05, 0.1, 0.15, 0.2, 0.25] + [0.6] * 12 + [0.7, 0.8, 0.9]
    correct = [True, False, False, False, True] + [True, False] * 6 + [True, True, False]
    c = torch.tensor(conf, dtype=torch.float64)
    st = bin_stats(c, torch.tensor(correct), 5, "equal_mass")
    assert st.counts.tolist() == [4, 1, 12, 0, 3]
    np.testing.assert_allclose(st.edges, [0.0, 0.25, 0.6, 0.7, 0.7, 1.0])
    expected = _hand_ece(conf, correct, [[0, 1, 2, 3], [4], list(range(5, 17)), [], [17, 18, 19]])
    assert st.calibration_error("l1") == pytest.approx(expected, abs=1e-12)
    # one cut, whose block's upper end is nearer: the cut at 6 inside the 0.5s at 2..7 moves up to 8
    conf = [0.3, 0.4] + [0.5] * 6 + [0.8, 0.9, 0.95, 0.99]
    st = bin_stats(torch.tensor(conf, dtype=torch.float64), torch.ones(12, dtype=torch.bool), 2, "equal_mass")
    assert st.counts.tolist() == [8, 4]


def test_two_blocks_and_a_draw_take_the_lower_end():
    # 8 samples, 4 bins: nominal cuts 2, 4, 6. 0.2 x4 at 0..3 holds the cut at 2 (2 - 0 == 4 - 2: a draw, the
    # lower end 0); 0.9 x4 at 4..7 holds the cut at 6 (a draw again: 4); the cut at 4 lies between the blocks
    conf = torch.tensor([0.2] * 4 + [0.9] * 4, dtype=torch.float64)
    idx = equal_mass_index(conf, 4)
    assert idx.tolist() == [1] * 4 + [3] * 4


@pytest.mark.parametrize("seed", range(6))
def test_the_bins_do_not_depend_on_the_row_order_and_never_split_a_tie(seed):
    g = torch.Generator().manual_seed(seed)
    n, n_bins = 257, 15
    levels = torch.tensor([0.3, 0.45, 0.5, 0.62, 0.8, 0.97, 1.0], dtype=torch.float64)
    conf = levels[torch.randint(0, len(levels), (n,), generator=g)]
    conf[: n // 3] = torch.rand(n // 3, generator=g, dtype=torch.float64)  # some untied values as well
    correct = torch.rand(n, generator=g) < conf
    _assert_cuts(conf, n_bins)
    idx = equal_mass_index(conf, n_bins)
    for v in torch.unique(conf):
        assert len(torch.unique(idx[conf == v])) == 1, float(v)  # a tie block shares one bin
    ref = bin_stats(conf, correct, n_bins, "equal_mass")
    for p in range(3):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(100 + p))
        assert torch.equal(equal_mass_index(conf[perm], n_bins), idx[perm])
        st = bin_stats(conf[perm], correct[perm], n_bins, "equal_mass")
        np.testing.assert_array_equal(st.counts, ref.counts)
        np.testing.assert_array_equal(st.edges, ref.edges)
    # the batched path (bootstrap resamples) bins each row exactly as the one-row path
    rows = torch.stack([conf, conf.flip(0), conf[torch.randperm(n, generator=g)]])
    batched = equal_mass_index(rows, n_bins)
    for r in range(3):
        assert torch.equal(batched[r], equal_mass_index(rows[r], n_bins))


def _assert_cuts(conf: torch.Tensor, n_bins: int) -> None:
    """Where each bin starts among the sorted samples: at the nominal ``ceil(b N / n_bins)``, or, when that
    falls inside a tie block ``[lo, hi)``, at the block end nearer to it (``lo`` on a draw)."""
    n = len(conf)
    idx = equal_mass_index(conf, n_bins)
    srt, order = torch.sort(conf, stable=True)
    bins = idx[order].tolist()
    assert bins == sorted(bins)  # bins are ordered by confidence
    for b in range(1, n_bins):
        r = -(-b * n // n_bins)
        cut = sum(1 for x in bins if x < b)
        if r < n and srt[r - 1] == srt[r]:
            lo = int(torch.searchsorted(srt, srt[r], right=False))
            hi = int(torch.searchsorted(srt, srt[r], right=True))
            assert cut == (lo if r - lo <= hi - r else hi), (conf.tolist(), n_bins, b)
        else:
            assert cut == r, (conf.tolist(), n_bins, b)


def test_cuts_sit_at_the_nominal_rank_or_the_nearer_end_of_a_tie_block():
    g = torch.Generator().manual_seed(3)
    for trial in range(40):
        n = int(torch.randint(1, 60, (1,), generator=g))
        n_bins = int(torch.randint(2, 16, (1,), generator=g))
        if trial % 4 == 0:  # no ties: the plain rank rule floor(rank * n_bins / N)
            conf = torch.rand(n, generator=g, dtype=torch.float64)
            rank = torch.argsort(torch.argsort(conf))
            assert torch.equal(equal_mass_index(conf, n_bins), rank * n_bins // n)
        else:
            conf = torch.randint(0, 4, (n,), generator=g).double() / 4
        _assert_cuts(conf, n_bins)


def test_saturated_float32_confidences_of_an_overconfident_network():
    g = torch.Generator().manual_seed(1)
    n, k = 3000, 10
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    sat = torch.rand(n, generator=g) < 0.4
    pred = torch.where(torch.rand(n, generator=g) < 0.9, y, torch.randint(0, k, (n,), generator=g))
    z[torch.arange(n), pred] += torch.where(sat, 60.0, 2.0)  # margin 60: softmax is exactly 1.0 in float32
    p = torch.softmax(z, 1)
    conf = p.max(1).values
    n_sat = int((conf == 1.0).sum())
    assert n_sat >= 0.35 * n
    st = reliability_bins(logits=z, labels=y, n_bins=15, binning="equal_mass")
    last = int(np.flatnonzero(st.counts)[-1])
    # the saturated block is the last non-empty bin, alone: no lower confidence shares it
    assert st.counts[last] == n_sat and st.mean_confidence[last] == 1.0
    correct = (p.argmax(1) == y).numpy()
    assert st.accuracy[last] == pytest.approx(correct[conf.numpy() == 1.0].mean(), abs=1e-12)
