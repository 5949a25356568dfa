"""One streaming state and one padded all-gather: the torchmetrics classes and CalibrationAccumulator hold the same
state tensors and compute the same numbers (float64-exact, and equal to the functional metrics); the shared
all-gather returns every rank's rows once, unpadded, for unequal row counts (a real 2-process gloo group)."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from focalcal.distributed_ops import all_gather_rows
from focalcal.engine.distributed import DistInfo, gather_rows
from focalcal.errors import InputError
from focalcal.integrations.torchmetrics import ECE, MCE, AdaptiveECE, ClasswiseECE, ReliabilityBins
from focalcal.metrics import CalibrationAccumulator, calibration_summary, reliability_bins

K = 5
N_BINS = 15


def _data(seed: int = 0, n: int = 600, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[n + 60, K]`` with labels drawn from their softmax (near-calibrated), tied leaders, saturated rows
    (confidence exactly 1.0) and 60 rows whose probabilities lie on the inner edges 0.4, 0.6, 0.8 of 5 and 15 bins
    (where ``closed="left"`` and ``"right"`` differ)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=g, dtype=torch.float64) * 2.5
    tie = torch.rand(n, generator=g) < 0.1
    z[tie, 0] = z[tie, 1] = 4.0
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    sat = torch.rand(n, generator=g) < 0.1
    z[sat, 0] = 60.0
    edge = torch.tensor([[0.6, 0.4, 1e-12, 1e-12, 1e-12], [0.2, 0.2, 0.2, 0.4, 1e-12]], dtype=torch.float64)
    pe = edge.repeat(30, 1)
    ye = torch.multinomial(pe, 1, generator=g).squeeze(1)
    z, y = torch.cat([z, pe.log()]), torch.cat([y, ye])
    perm = torch.randperm(z.shape[0], generator=g)
    return z[perm].to(dtype), y[perm]


def _metrics(closed: str) -> dict:
    return {
        "ece": ECE(n_bins=N_BINS, num_classes=K, from_logits=True, closed=closed),
        "mce": MCE(n_bins=N_BINS, num_classes=K, from_logits=True, closed=closed),
        "adaptive_ece": AdaptiveECE(n_bins=N_BINS, num_classes=K, from_logits=True),
        "classwise_ece": ClasswiseECE(n_bins=N_BINS, num_classes=K, from_logits=True, closed=closed),
        "width_bins": ReliabilityBins(n_bins=N_BINS, from_logits=True, closed=closed),
        "mass_bins": ReliabilityBins(n_bins=N_BINS, from_logits=True, binning="equal_mass"),
    }


def _as_tensor(value) -> torch.Tensor:
    return torch.cat(value) if isinstance(value, list) else value


def _assert_bins_identical(a, b) -> None:
    assert (a.binning, a.closed) == (b.binning, b.closed)
    for field in ("edges", "counts", "mean_confidence", "accuracy"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("closed", ["left", "right"])
def test_adapters_and_accumulator_hold_one_state(closed, dtype):
    z, y = _data(dtype=dtype)
    acc = CalibrationAccumulator(N_BINS, K, closed=closed)
    metrics = _metrics(closed)
    for lo, hi in ((0, 1), (1, 64), (64, 300), (300, z.shape[0])):  # uneven batches, one of a single row
        acc.update(logits=z[lo:hi], labels=y[lo:hi])
        for m in metrics.values():
            m.update(z[lo:hi], y[lo:hi])
    # every state tensor a torchmetrics class registers is the accumulator's tensor of that name, bit for bit
    for key, m in metrics.items():
        states = m.metric_state
        assert "n_samples" in states and len(states) >= 2, key
        for name, value in states.items():
            mine = _as_tensor(getattr(acc.state, name))
            theirs = _as_tensor(value)
            assert mine.dtype == theirs.dtype and torch.equal(mine, theirs), (key, name)
    got = acc.compute()
    # the same numbers, float64-exact ...
    for key in ("ece", "mce", "adaptive_ece", "classwise_ece"):
        value = metrics[key].compute()
        assert value.dtype == torch.float64 and float(value) == got[key], key
    _assert_bins_identical(metrics["width_bins"].compute(), acc.reliability_bins("equal_width"))
    _assert_bins_identical(metrics["mass_bins"].compute(), acc.reliability_bins("equal_mass"))
    # ... and those of the functional metrics on the concatenated batches (the independent reference)
    ref = calibration_summary(logits=z, labels=y, n_bins=N_BINS, closed=closed)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-10), key
    assert ref["ece"] > 0.01 and ref["classwise_ece"] > 0.01
    ref_bins = reliability_bins(logits=z, labels=y, n_bins=N_BINS, closed=closed)
    np.testing.assert_array_equal(acc.reliability_bins().counts, ref_bins.counts)
    np.testing.assert_array_equal(acc.reliability_bins().edges, ref_bins.edges)


def test_all_gather_rows_without_group_and_in_a_group_of_one(tmp_path):
    rows = torch.arange(12.0).reshape(4, 3)
    assert not dist.is_initialized()
    assert all_gather_rows(rows) is rows  # no process group: this process holds every row
    with pytest.raises(InputError, match=r"rows of shape \[n, W\]; got shape \[12\]"):
        all_gather_rows(rows.reshape(-1))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        out = all_gather_rows(rows)
        assert out is not rows and out.dtype == rows.dtype and torch.equal(out, rows)
        empty = all_gather_rows(torch.zeros(0, 0, dtype=torch.int64))
        assert empty.shape == (0, 0) and empty.dtype == torch.int64
    finally:
        dist.destroy_process_group()


# -- two gloo processes: unequal row counts, an empty shard, rows of different widths --------------------------


def _gather_case(rank: int, local: torch.Tensor, engine: bool) -> dict:
    try:
        out = gather_rows(local, DistInfo(rank, 2)) if engine else all_gather_rows(local)
        return {"rows": out}
    except InputError as exc:
        return {"error": str(exc)}


def _rows(rank: int, case: str) -> torch.Tensor:
    """This rank's rows in each case (rank 0, then rank 1; distinct values so the order is checked)."""
    if case == "unequal":
        n = 3 if rank == 0 else 5
        return torch.arange(n * 4, dtype=torch.float64).reshape(n, 4) + 100 * rank
    if case == "empty":
        return torch.zeros(0, 0) if rank == 0 else torch.arange(8.0).reshape(2, 4)
    return torch.ones(2, 1) if rank == 0 else torch.ones(2, 3)  # "widths": rank 0's rows are too narrow


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = {case: _gather_case(rank, _rows(rank, case), engine=False) for case in ("unequal", "empty", "widths")}
        out["engine_widths"] = _gather_case(rank, _rows(rank, "widths"), engine=True)
        # the accumulator gathers its stored confidences with the same function; rank 1 sees no batch at all
        z, y = _data(seed=4, n=300)
        acc = CalibrationAccumulator(N_BINS, K)
        if rank == 0:
            for s in range(0, z.shape[0], 100):
                acc.update(logits=z[s : s + 100], labels=y[s : s + 100])
        out["summary"] = acc.compute()
        out["edges"] = acc.reliability_bins("equal_width").edges
        out["mass_counts"] = acc.reliability_bins("equal_mass").counts
        torch.save(out, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gather_unpads_and_syncs():
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.start_processes(
            _worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=False, start_method="fork"
        )
        deadline = time.monotonic() + 120.0
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for proc in ctx.processes:
                    if proc.is_alive():
                        proc.kill()
                pytest.fail("the 2-process gloo test did not finish within 120 s")
        results = [torch.load(os.path.join(tmp, f"{r}.pt"), weights_only=False) for r in range(2)]
    z, y = _data(seed=4, n=300)
    ref = calibration_summary(logits=z, labels=y, n_bins=N_BINS)
    ref_width = reliability_bins(logits=z, labels=y, n_bins=N_BINS)
    ref_mass = reliability_bins(logits=z, labels=y, n_bins=N_BINS, binning="equal_mass")
    for rank, res in enumerate(results):
        for case in ("unequal", "empty"):
            expected = torch.cat([_rows(0, case).reshape(-1, 4), _rows(1, case)])
            got = res[case]["rows"]
            assert got.dtype == expected.dtype and torch.equal(got, expected), (rank, case)
        assert res["unequal"]["rows"].shape == (8, 4) and res["empty"]["rows"].shape == (2, 4)
        # rows of different widths are refused on every rank (before: silently broadcast into the wider rows)
        for case in ("widths", "engine_widths"):
            assert "rows" not in res[case], (rank, case)
            assert "differ in width ([1, 3])" in res[case]["error"], (rank, case)
        for key in ref:
            assert res["summary"][key] == pytest.approx(ref[key], abs=1e-10), (rank, key)
        # the rank without a batch reports the same float64 edges as the rank with all of them
        np.testing.assert_array_equal(res["edges"], ref_width.edges)
        np.testing.assert_array_equal(res["mass_counts"], ref_mass.counts)
