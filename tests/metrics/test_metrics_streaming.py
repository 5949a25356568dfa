"""CalibrationAccumulator: batches add up to the one-shot summary; a real 2-process gloo group syncs."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from focalcal.metrics import CalibrationAccumulator, calibration_summary, reliability_bins


def _data(seed=0, n=700, k=6):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    z[torch.arange(n), y] += 1.5
    return z * 2, y


def _assert_same(a: dict, b: dict, tol=1e-12):
    assert set(a) == set(b)
    for key in a:
        # classwise sums p in float32 within 64-row blocks (relative error ~1e-7 of those sums);
        # batching changes the blocks: ~1e-9 here
        t = max(tol, 1e-8) if key == "classwise_ece" and tol else tol
        assert a[key] == pytest.approx(b[key], abs=t), key


def test_batches_equal_one_shot_summary():
    z, y = _data()
    acc = CalibrationAccumulator(n_bins=12, num_classes=6)
    for s in range(0, len(y), 97):  # uneven batches
        acc.update(logits=z[s : s + 97], labels=y[s : s + 97])
    assert acc.n_samples == len(y)
    _assert_same(acc.compute(), calibration_summary(logits=z, labels=y, n_bins=12))
    # reliability bins equal the one-shot ones
    for binning in ("equal_width", "equal_mass"):
        a, b = acc.reliability_bins(binning), reliability_bins(logits=z, labels=y, n_bins=12, binning=binning)
        assert (a.counts == b.counts).all()
        torch.testing.assert_close(torch.from_numpy(a.accuracy), torch.from_numpy(b.accuracy))
        torch.testing.assert_close(torch.from_numpy(a.mean_confidence), torch.from_numpy(b.mean_confidence))
        torch.testing.assert_close(torch.from_numpy(a.edges), torch.from_numpy(b.edges))
    # compute() does not consume the state
    _assert_same(acc.compute(), acc.compute(), tol=0)


def test_probs_numpy_and_no_confidences():
    z, y = _data(1)
    p = torch.softmax(z.double(), 1)
    acc = CalibrationAccumulator(n_bins=15, store_confidences=False)
    for s in range(0, len(y), 200):
        acc.update(probs=p[s : s + 200].numpy(), labels=y[s : s + 200].numpy())
    out = acc.compute()
    ref = calibration_summary(probs=p, labels=y)
    assert "adaptive_ece" not in out
    ref.pop("adaptive_ece")
    _assert_same(out, ref)
    assert acc.num_classes == 6  # from the width of the scores, not from the labels


def test_state_is_small_without_confidences():
    acc = CalibrationAccumulator(n_bins=15, num_classes=100, store_confidences=False)
    z = torch.randn(5000, 100)
    acc.update(logits=z, labels=torch.randint(0, 100, (5000,)))
    # equal-width sums (3 x n_bins) and their float64 count, classwise (K x n_bins), n, correct, NLL, Brier
    assert acc._packed().numel() == 3 * 15 + 1 + 100 * 15 + 4
    assert not hasattr(acc.state, "conf") and not hasattr(acc.state, "correct")


def test_errors_and_reset():
    acc = CalibrationAccumulator(n_bins=5, num_classes=3)
    with pytest.raises(ValueError, match="no samples accumulated"):
        acc.compute()
    with pytest.raises(ValueError, match="batch has 4 classes but the accumulator has num_classes=3"):
        acc.update(logits=torch.zeros(2, 4), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        acc.update(logits=torch.zeros(2, 3), labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationAccumulator(n_bins=0)
    acc.update(logits=torch.zeros(2, 3), labels=torch.tensor([0, 1]))
    acc.reset()
    assert acc.n_samples == 0


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        z, y = _data(2, n=500)
        acc = CalibrationAccumulator(n_bins=10, num_classes=6)
        # rank 0 gets 3/5 of the data, rank 1 the rest (unequal sizes exercise the padded all_gather)
        part = slice(0, 300) if rank == 0 else slice(300, 500)
        for s in range(part.start, part.stop, 64):
            e = min(s + 64, part.stop)
            acc.update(logits=z[s:e], labels=y[s:e])
        torch.save({"synced": acc.compute(), "local": acc.compute(sync=False)}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_sync():
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        # fork: the children inherit the imported modules (spawn would re-import torch: ~10x slower)
        mp.start_processes(_worker, args=(2, init_file, tmp), nprocs=2, join=True, start_method="fork")
        r0 = torch.load(os.path.join(tmp, "0.pt"))
        r1 = torch.load(os.path.join(tmp, "1.pt"))
    z, y = _data(2, n=500)
    full = calibration_summary(logits=z, labels=y, n_bins=10)
    _assert_same(r0["synced"], full)
    _assert_same(r1["synced"], full)
    _assert_same(r0["local"], calibration_summary(logits=z[:300], labels=y[:300], n_bins=10))
    _assert_same(r1["local"], calibration_summary(logits=z[300:], labels=y[300:], n_bins=10))


@pytest.mark.parametrize("closed", ["left", "right"])
def test_both_bin_rules_stream_to_the_functional_values(closed):
    from focalcal.metrics import CalibrationAccumulator, calibration_summary

    g = torch.Generator().manual_seed(3)
    k = 5
    labels = torch.randint(0, k, (900,), generator=g)
    # probabilities on a 1/15 grid: many values sit exactly on bin edges, where the two rules differ
    probs = torch.randint(0, 15, (900, k), generator=g).double() + 1
    probs = probs / probs.sum(1, keepdim=True)
    acc = CalibrationAccumulator(15, k, closed=closed)
    for s in range(0, 900, 200):
        acc.update(probs=probs[s : s + 200], labels=labels[s : s + 200])
    got, ref = acc.compute(), calibration_summary(probs=probs, labels=labels, closed=closed)
    for key in ("ece", "classwise_ece", "mce", "nll", "brier", "error", "adaptive_ece"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
