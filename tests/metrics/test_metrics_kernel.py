"""The metrics kernel (one chunked pass) against a dense reference computed directly, for every option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal.metrics.kernel import equal_width_edges, equal_width_index, scan_tensor


def _inputs(kind: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    n, k = 1500, 20
    y = torch.randint(0, k, (n,), generator=g)
    if kind == "ties":  # tied rows, exact edges, exact 1.0, maxima below edges[1] (flat rows, K > n_bins)
        z = torch.randint(-1, 2, (n, k), generator=g).to(dtype)
        z[::7] = 0.0
        z[::11, 3] = 80.0
        z[::13, :2] = 50.0
    else:
        z = (torch.randn(n, k, generator=g) * 3).to(dtype)
    return z, y


def _dense_bins(p: torch.Tensor, nb: int, closed: str) -> torch.Tensor:
    """Bin of every entry by the definition, with bucketize on the edges (no tricks)."""
    edges = torch.linspace(0, 1, nb + 1, dtype=p.dtype)
    if closed == "left":  # [lo, hi), last bin closed
        return (torch.bucketize(p, edges, right=True) - 1).clamp(0, nb - 1)
    return (torch.bucketize(p, edges, right=False) - 1).clamp(0, nb - 1)  # (lo, hi], first bin closed


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("nb", [None, 1, 15])
@pytest.mark.parametrize("closed", ["left", "right"])
def test_kernel_equals_a_dense_reference(kind, dtype, from_logits, nb, closed):
    z, y = _inputs(kind, dtype)
    scores = z if from_logits else torch.softmax(z.double(), 1).to(dtype)
    kw = dict(
        from_logits=from_logits,
        need_nll=True,
        need_brier=True,
        classwise_bins=nb,
        classwise_counts=nb is not None,
        chunk_elements=4096,
        closed=closed,
    )
    a = scan_tensor(scores, y, **kw)
    p = torch.softmax(scores, 1, dtype=scores.dtype) if from_logits else scores
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a.confidence, p.amax(1), rtol=rtol, atol=rtol)
    assert torch.equal(a.correct, p.argmax(1) == y)  # first maximal class, as torch
    ref_nll = (
        -torch.log_softmax(scores.double(), 1)[torch.arange(len(y)), y]
        if from_logits
        else -torch.log(p.double()[torch.arange(len(y)), y].clamp_min(torch.finfo(dtype).tiny))
    )
    torch.testing.assert_close(a.nll, ref_nll, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    torch.testing.assert_close(a.brier, ((p.double() - onehot) ** 2).sum(1), rtol=1e-5, atol=1e-6)
    if nb is not None:
        idx = _dense_bins(p, nb, closed)  # [N, K]
        ref_counts = torch.stack([torch.bincount(idx[:, c], minlength=nb) for c in range(p.shape[1])])
        ref_diff = torch.stack(
            [
                torch.bincount(idx[:, c], weights=onehot[:, c] - p[:, c].double(), minlength=nb)
                for c in range(p.shape[1])
            ]
        )
        assert torch.equal(a.classwise_counts, ref_counts)
        tol = 2e-5 if dtype == torch.float32 else 1e-9  # float32 column sums over ~75 entries per class
        torch.testing.assert_close(a.classwise_diff, ref_diff, rtol=tol, atol=tol)


def test_chunk_size_and_thread_count_do_not_change_results():
    z, y = _inputs("random", torch.float32)
    kw = dict(from_logits=True, need_nll=True, need_brier=True, classwise_bins=15)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = scan_tensor(z, y, chunk_elements=2048, **kw)
        torch.set_num_threads(2)
        b = scan_tensor(z, y, chunk_elements=2048, **kw)
    finally:
        torch.set_num_threads(before)
    c = scan_tensor(z, y, chunk_elements=1 << 20, **kw)
    for f in ("confidence", "correct", "nll", "brier", "classwise_diff"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
        torch.testing.assert_close(getattr(a, f), getattr(c, f), rtol=1e-6, atol=1e-6)


def test_non_contiguous_and_numpy_views():
    z, y = _inputs("random", torch.float32)
    zt = z.T.contiguous().T  # same values, column-major
    from focalcal.metrics import calibration_summary

    assert calibration_summary(logits=zt, labels=y) == calibration_summary(logits=z, labels=y)
    assert calibration_summary(logits=np.asfortranarray(z.numpy()), labels=y.numpy()) == calibration_summary(
        logits=z, labels=y
    )


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
@pytest.mark.parametrize("n_bins", [1, 4, 15, 40])
@pytest.mark.parametrize("closed", ["left", "right"])
def test_bin_sums_single_and_batched_agree_with_a_direct_count(binning, n_bins, closed):
    from focalcal.metrics.binning import bin_sums

    g = torch.Generator().manual_seed(n_bins)
    conf = torch.randint(1, 40, (300,), generator=g).float() / 40  # ties and exact edges
    correct = torch.rand(300, generator=g) < conf
    _, c1, s1, a1 = bin_sums(conf, correct, n_bins, binning, closed)
    _, c2, s2, a2 = bin_sums(conf[None], correct[None], n_bins, binning, closed)
    assert torch.equal(c1, c2[0])
    torch.testing.assert_close(s1, s2[0])
    torch.testing.assert_close(a1, a2[0])
    if binning == "equal_width":
        idx = _dense_bins(conf, n_bins, closed)
        assert torch.equal(c1, torch.bincount(idx, minlength=n_bins))


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 20, 50])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("closed", ["left", "right"])
def test_equal_width_index_on_and_beside_every_edge(n_bins, dtype, closed):
    e = equal_width_edges(n_bins, dtype)
    up = torch.nextafter(e, torch.tensor(2.0, dtype=dtype))
    down = torch.nextafter(e, torch.tensor(-1.0, dtype=dtype))
    v = torch.cat([e, up, down, torch.rand(1000, dtype=dtype, generator=torch.Generator().manual_seed(n_bins))])
    v = v.clamp(0, 1)
    assert torch.equal(equal_width_index(v, e, closed), _dense_bins(v, n_bins, closed))


def test_the_two_bin_rules_differ_only_on_inner_edges():
    e = equal_width_edges(8, torch.float64)  # multiples of 1/8: exact in binary
    v = torch.tensor([0.0, 0.0625, 0.125, 0.375, 0.9375, 1.0], dtype=torch.float64)
    assert equal_width_index(v, e, "left").tolist() == [0, 0, 1, 3, 7, 7]
    # (lo, hi]: 0.125 = edges[1] goes to the lower bin, as in the authors' code; 0.0 stays in bin 0 (they drop it)
    assert equal_width_index(v, e, "right").tolist() == [0, 0, 0, 2, 7, 7]
