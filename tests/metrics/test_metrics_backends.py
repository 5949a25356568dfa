"""The numpy (CPU) and torch (accelerator) scan kernels agree, for every option and input kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal.metrics._scan import scan_tensor


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


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("nb", [None, 1, 15])
def test_numpy_and_torch_backends_agree(kind, dtype, from_logits, nb):
    z, y = _inputs(kind, dtype)
    scores = z if from_logits else torch.softmax(z.double(), 1).to(dtype)
    kw = dict(from_logits=from_logits, need_nll=True, need_brier=True, classwise_bins=nb,
              classwise_counts=nb is not None, chunk_elements=4096)
    a = scan_tensor(scores, y, backend="numpy", **kw)
    b = scan_tensor(scores, y, backend="torch", **kw)
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a.confidence, b.confidence, rtol=rtol, atol=rtol)
    assert torch.equal(a.correct, b.correct)
    torch.testing.assert_close(a.nll, b.nll, rtol=rtol, atol=rtol)
    torch.testing.assert_close(a.brier, b.brier, rtol=rtol, atol=rtol * 10)
    if nb is not None:
        # sums over ~N/K = 75 probabilities per class: float32 column sums differ at ~1e-6
        tol = 2e-5 if dtype == torch.float32 else 1e-9
        torch.testing.assert_close(a.classwise_diff, b.classwise_diff, rtol=tol, atol=tol)
        assert torch.equal(a.classwise_counts, b.classwise_counts)
        # counts against a direct count of every p_ik per (class, bin)
        p = torch.softmax(scores.double(), 1) if from_logits else scores.double()
        edges = torch.linspace(0, 1, nb + 1, dtype=torch.float64)
        idx = (torch.bucketize(p, edges, right=True) - 1).clamp(0, nb - 1)
        ref = torch.stack([torch.bincount(idx[:, c], minlength=nb) for c in range(p.shape[1])])
        assert (a.classwise_counts - ref).abs().sum() <= 2  # float32 vs float64 softmax at an edge
    # correctness = first argmax == label, computed independently
    p = torch.softmax(scores, 1) if from_logits else scores
    assert torch.equal(a.correct, p.argmax(1) == y)


def test_thread_count_does_not_change_results():
    z, y = _inputs("random", torch.float32)
    kw = dict(from_logits=True, need_nll=True, need_brier=True, classwise_bins=15, chunk_elements=2048)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = scan_tensor(z, y, **kw)
        torch.set_num_threads(2)
        b = scan_tensor(z, y, **kw)
    finally:
        torch.set_num_threads(before)
    for f in ("confidence", "correct", "nll", "brier", "classwise_diff"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


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
def test_bin_sums_numpy_and_torch_paths_agree(binning, n_bins):
    from focalcal.metrics.binning import bin_sums

    g = torch.Generator().manual_seed(n_bins)
    conf = torch.randint(1, 40, (300,), generator=g).float() / 40  # ties and exact edges
    correct = torch.rand(300, generator=g) < conf
    _, c1, s1, a1 = bin_sums(conf, correct, n_bins, binning)  # 1-D CPU: numpy
    _, c2, s2, a2 = bin_sums(conf[None], correct[None], n_bins, binning)  # batched: torch
    assert torch.equal(c1, c2[0])
    torch.testing.assert_close(s1, s2[0])
    torch.testing.assert_close(a1, a2[0])
