"""focalcal.integrations.torchmetrics: the Metric classes equal focalcal's functional metrics over batches, agree
with torchmetrics' own calibration error, work in a MetricCollection, reset, sync over a real 2-process gloo
group, and refuse bad input with InputError."""

from __future__ import annotations

import ast
import importlib
import os
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassCalibrationError

from focalcal.errors import InputError
from focalcal.integrations.torchmetrics import ECE, MCE, AdaptiveECE, ClasswiseECE, ReliabilityBins
from focalcal.metrics import BinStats, adaptive_ece, classwise_ece, ece, mce, reliability_bins

K = 5
SRC = Path(__file__).resolve().parents[2] / "src" / "focalcal"

# functional twin of each class
FUNCTIONAL = {ECE: ece, MCE: mce, AdaptiveECE: adaptive_ece, ClasswiseECE: classwise_ece}


def _data(seed: int = 0, n: int = 700) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, probs, labels)`` float64, shuffled: ``n`` rows of random logits with labels drawn from their
    softmax (near-calibrated, so moving a few samples between bins changes the bin gaps' signs and the ECE),
    two-way ties at the top, rows with confidence exactly 1.0 and a random (often wrong) label, and 60 probability
    rows whose entries lie exactly on the edges 0.4, 0.6 and 0.8 shared by 5 and 15 equal-width bins (so
    ``closed="left"`` and ``"right"`` differ). In ``logits`` these last rows are their log-probabilities."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=g, dtype=torch.float64) * 2.5
    tie = torch.rand(n, generator=g) < 0.1
    z[tie, 1] = z[tie, 0] = 4.0
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    sat = torch.rand(n, generator=g) < 0.1
    z[sat, 0] = 60.0  # softmax gives exactly 1.0 in float64
    y[sat] = torch.randint(0, K, (int(sat.sum()),), generator=g)
    edge_rows = torch.tensor(
        [[0.6, 0.4, 0.0, 0.0, 0.0], [0.8, 0.0, 0.2, 0.0, 0.0], [0.4, 0.2, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 0.4, 0.6]],
        dtype=torch.float64,
    )
    pe = edge_rows.repeat(15, 1)
    ye = torch.multinomial(pe, 1, generator=g).squeeze(1)
    p = torch.cat([torch.softmax(z, 1), pe])
    z = torch.cat([z, torch.log(pe.clamp_min(1e-12))])
    y = torch.cat([y, ye])
    perm = torch.randperm(p.shape[0], generator=g)
    return z[perm], p[perm], y[perm]


def _batches(n: int) -> list[slice]:
    """Uneven batches, including one of a single row."""
    cuts = [0, 1, 64, 300, n]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _kwargs(n_bins: int, closed: str | None) -> dict:
    return {"n_bins": n_bins} if closed is None else {"n_bins": n_bins, "closed": closed}


def _feed(metric, scores: torch.Tensor, labels: torch.Tensor) -> None:
    for sl in _batches(scores.shape[0]):
        metric.update(scores[sl], labels[sl])


def _functional(cls, scores, labels, from_logits: bool, **kw) -> float:
    key = "logits" if from_logits else "probs"
    return FUNCTIONAL[cls](**{key: scores, "labels": labels}, **kw)


def _assert_bins_equal(got: BinStats, ref: BinStats) -> None:
    assert isinstance(got, BinStats)
    assert (got.binning, got.closed) == (ref.binning, ref.closed)
    np.testing.assert_array_equal(got.counts, ref.counts)
    np.testing.assert_allclose(got.edges, ref.edges, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.mean_confidence, ref.mean_confidence, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.accuracy, ref.accuracy, rtol=0, atol=1e-10)


# -- (a) batches add up to the functional metric on the concatenation ----------------------------------------


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize(
    "cls, closed",
    [(c, r) for c in (ECE, MCE, ClasswiseECE) for r in ("left", "right")] + [(AdaptiveECE, None)],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_batches_equal_functional_metric(cls, closed, n_bins, from_logits):
    z, p, y = _data()
    scores = z if from_logits else p
    kw = _kwargs(n_bins, closed)
    metric = cls(num_classes=K, from_logits=from_logits, **kw)
    _feed(metric, scores, y)
    value = metric.compute()
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64 and value.ndim == 0
    ref = _functional(cls, scores, y, from_logits, **kw)
    assert 0.01 < ref < 1.0  # a real, non-trivial value
    assert float(value) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("n_bins", [5, 15])
def test_closed_rule_changes_the_result_on_this_data(n_bins):
    """The data of the test above has values on bin edges, so it tells the two rules apart."""
    _, p, y = _data()
    left, right = (reliability_bins(probs=p, labels=y, n_bins=n_bins, closed=c).counts for c in ("left", "right"))
    assert (left != right).any()
    for cls in (ECE, ClasswiseECE):  # (MCE's largest gap may lie in a bin the edges do not touch)
        left, right = (_functional(cls, p, y, False, n_bins=n_bins, closed=c) for c in ("left", "right"))
        assert abs(left - right) > 1e-6, cls.__name__  # far above the 1e-10 the tests compare to
        metric = cls(n_bins=n_bins, num_classes=K, from_logits=False, closed="right")
        _feed(metric, p, y)
        assert float(metric.compute()) == pytest.approx(right, abs=1e-10)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("binning, closed", [("equal_width", "left"), ("equal_width", "right"), ("equal_mass", "left")])
def test_reliability_bins_equal_functional(binning, closed, n_bins, from_logits):
    z, p, y = _data()
    scores = z if from_logits else p
    metric = ReliabilityBins(n_bins=n_bins, from_logits=from_logits, binning=binning, closed=closed)
    _feed(metric, scores, y)
    got = metric.compute()
    key = "logits" if from_logits else "probs"
    ref = reliability_bins(**{key: scores}, labels=y, n_bins=n_bins, binning=binning, closed=closed)
    _assert_bins_equal(got, ref)
    assert got.n_samples == y.shape[0]
    # the BinStats also gives the ECE / AdaECE of the dedicated classes
    if binning == "equal_width":
        twin = ECE(n_bins=n_bins, from_logits=from_logits, closed=closed)
    else:
        twin = AdaptiveECE(n_bins=n_bins, from_logits=from_logits)
    _feed(twin, scores, y)
    assert got.calibration_error("l1") == pytest.approx(float(twin.compute()), abs=1e-12)


def test_reliability_bins_float32_edges_and_one_bin_one_sample():
    z, _, y = _data()
    z32 = z.float()
    metric = ReliabilityBins(n_bins=15, from_logits=True)
    _feed(metric, z32, y)
    ref = reliability_bins(logits=z32, labels=y, n_bins=15)
    _assert_bins_equal(metric.compute(), ref)
    assert metric.compute().edges[1] == np.float64(np.float32(1 / 15))  # float32 linspace, as the functional one
    # torchmetrics squeezes one-element results: n_bins=1 and a single sample still give [1]-shaped arrays
    for binning in ("equal_width", "equal_mass"):
        one = ReliabilityBins(n_bins=1, from_logits=True, binning=binning)
        one.update(z[:1], y[:1])
        got = one.compute()
        _assert_bins_equal(got, reliability_bins(logits=z[:1], labels=y[:1], n_bins=1, binning=binning))
        assert got.counts.tolist() == [1]


def test_float32_batches_equal_functional():
    z, _, y = _data()
    z32 = z.float()
    for cls in (ECE, MCE, AdaptiveECE, ClasswiseECE):
        metric = cls(n_bins=15, num_classes=K, from_logits=True)
        _feed(metric, z32, y)
        assert float(metric.compute()) == pytest.approx(_functional(cls, z32, y, True, n_bins=15), abs=1e-10)


# -- (b) agreement with torchmetrics' MulticlassCalibrationError --------------------------------------------


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("cls, norm", [(ECE, "l1"), (MCE, "max")])
def test_matches_torchmetrics_multiclass_calibration_error(cls, norm, n_bins, from_logits):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(900, K, generator=g, dtype=torch.float64) * 2.0
    y = torch.randint(0, K, (900,), generator=g)
    p = torch.softmax(z, 1)
    conf = p.max(1).values
    # Keep only rows whose confidence is neither within 1e-6 of an inner bin edge (where the closed rule
    # matters) nor 1.0: torchmetrics bins [lo, hi) like closed="left" but gives a confidence of exactly 1.0 an
    # extra (n_bins + 1)-th bin of its own, while focalcal keeps it in the last bin.
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    keep = ((conf[:, None] - edges[None, 1:-1]).abs().min(1).values > 1e-6) & (conf < 1 - 1e-6)
    z, p, y = z[keep], p[keep], y[keep]
    assert z.shape[0] > 850
    ours = cls(n_bins=n_bins, from_logits=from_logits)
    ref = MulticlassCalibrationError(num_classes=K, n_bins=n_bins, norm=norm)
    for sl in _batches(z.shape[0]):
        ours.update((z if from_logits else p)[sl], y[sl])
        ref.update(p[sl], y[sl])  # probabilities: torchmetrics would softmax only values outside [0, 1]
    expected = float(ref.compute())
    assert expected > 0.01
    assert float(ours.compute()) == pytest.approx(expected, abs=1e-6)


# -- (c) MetricCollection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("compute_groups", [True, False])
def test_metric_collection(compute_groups):
    z, _, y = _data(seed=1)
    coll = MetricCollection(
        {
            "ece": ECE(n_bins=15, num_classes=K, from_logits=True),
            "mce": MCE(n_bins=15, num_classes=K, from_logits=True),
            "adaece": AdaptiveECE(n_bins=15, num_classes=K, from_logits=True),
            "cwece": ClasswiseECE(n_bins=15, num_classes=K, from_logits=True),
            "bins": ReliabilityBins(n_bins=15, num_classes=K, from_logits=True),
        },
        compute_groups=compute_groups,
    )
    first = _batches(z.shape[0])[2]
    batch = coll(z[first], y[first])  # forward: the batch's values, and the batch is accumulated
    assert float(batch["ece"]) == pytest.approx(ece(logits=z[first], labels=y[first]), abs=1e-10)
    assert batch["bins"].n_samples == first.stop - first.start
    for sl in _batches(z.shape[0]):
        if sl != first:
            coll.update(z[sl], y[sl])
    out = coll.compute()
    assert set(out) == {"ece", "mce", "adaece", "cwece", "bins"}
    assert float(out["ece"]) == pytest.approx(ece(logits=z, labels=y), abs=1e-10)
    assert float(out["mce"]) == pytest.approx(mce(logits=z, labels=y), abs=1e-10)
    assert float(out["adaece"]) == pytest.approx(adaptive_ece(logits=z, labels=y), abs=1e-10)
    assert float(out["cwece"]) == pytest.approx(classwise_ece(logits=z, labels=y), abs=1e-10)
    _assert_bins_equal(out["bins"], reliability_bins(logits=z, labels=y))
    coll.to("cpu")  # ReliabilityBins' forward must leave nothing that torchmetrics cannot move
    coll.reset()
    coll.update(z[:50], y[:50])
    assert float(coll.compute()["ece"]) == pytest.approx(ece(logits=z[:50], labels=y[:50]), abs=1e-10)


# -- (d) reset ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ECE(from_logits=True),
        lambda: MCE(from_logits=True),
        lambda: AdaptiveECE(from_logits=True),
        lambda: ClasswiseECE(num_classes=K, from_logits=True),
        lambda: ReliabilityBins(from_logits=True),
        lambda: ReliabilityBins(from_logits=True, binning="equal_mass"),
    ],
)
def test_reset(make):
    z, _, y = _data(seed=2)
    metric = make()
    _feed(metric, z[:400], y[:400])
    before = metric.compute()
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"), pytest.raises(InputError, match="no samples"):
        metric.compute()
    _feed(metric, z[400:], y[400:])
    after = metric.compute()
    fresh = make()
    _feed(fresh, z[400:], y[400:])
    expected = fresh.compute()
    if isinstance(after, BinStats):
        _assert_bins_equal(after, expected)
        assert after.n_samples == z.shape[0] - 400
        assert before.n_samples == 400
    else:
        assert float(after) == float(expected)
        assert float(after) != pytest.approx(float(before), abs=1e-6)


# -- (e) DDP: two gloo processes -----------------------------------------------------------------------------


def _ddp_metrics() -> dict:
    return {
        "ece": ECE(n_bins=10, num_classes=K, from_logits=True),
        "mce": MCE(n_bins=10, num_classes=K, from_logits=True, closed="right"),
        "adaece": AdaptiveECE(n_bins=10, num_classes=K, from_logits=True),
        "cwece": ClasswiseECE(n_bins=10, num_classes=K, from_logits=True),
        "bins": ReliabilityBins(n_bins=10, from_logits=True),
        "mass_bins": ReliabilityBins(n_bins=10, from_logits=True, binning="equal_mass"),
    }


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        z, _, y = _data(seed=3, n=240)
        n = z.shape[0]
        # rank 0 gets about 3/5 of the rows, rank 1 the rest (unequal sizes exercise the padded "cat" gather)
        lo, hi = (0, 180) if rank == 0 else (180, n)
        metrics = _ddp_metrics()
        for s in range(lo, hi, 50):
            e = min(s + 50, hi)
            for m in metrics.values():
                m.update(z[s:e], y[s:e])
        out = {}
        for name, m in metrics.items():
            v = m.compute()
            out[name] = v.to_dict() if isinstance(v, BinStats) else float(v)
        # after compute() every rank keeps accumulating its own part only
        out["local_counts"] = int(metrics["ece"].counts.sum())
        torch.save(out, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_sync():
    timeout_s = 180.0
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children inherit the imported modules (spawn would re-import torch, and could not import this
        # test module by name under --import-mode=importlib)
        ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), tmp), nprocs=2, join=False, start_method="fork")
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for proc in ctx.processes:
                    if proc.is_alive():
                        proc.kill()
                pytest.fail(f"the 2-process gloo test did not finish within {timeout_s:.0f} s")
        results = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(2)]
    z, _, y = _data(seed=3, n=240)
    single = _ddp_metrics()
    for m in single.values():
        m.update(z, y)
    for rank, res in enumerate(results):
        for name, m in single.items():
            ref = m.compute()
            if isinstance(ref, BinStats):
                got = res[name]
                assert got["counts"] == ref.counts.tolist(), (rank, name)
                np.testing.assert_allclose(got["mean_confidence"], ref.mean_confidence, rtol=0, atol=1e-10)
                np.testing.assert_allclose(got["accuracy"], ref.accuracy, rtol=0, atol=1e-10)
                np.testing.assert_allclose(got["edges"], ref.edges, rtol=0, atol=1e-12)
            else:
                assert res[name] == pytest.approx(float(ref), abs=1e-10), (rank, name)
        assert res["local_counts"] == (180 if rank == 0 else z.shape[0] - 180)
    assert results[0]["ece"] == pytest.approx(ece(logits=z, labels=y, n_bins=10), abs=1e-10)
    assert results[0]["ece"] > 0.01


# -- (f) bad input --------------------------------------------------------------------------------------------


def _raises(fn, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [ECE, MCE, AdaptiveECE, ClasswiseECE, ReliabilityBins])
def test_bad_update_input(cls):
    metric = cls(num_classes=3, from_logits=True)
    z = torch.randn(4, 3, dtype=torch.float64)
    _raises(lambda: metric.update(torch.randn(4), torch.zeros(4, dtype=torch.long)), r"shape \[N, K\]")
    _raises(lambda: metric.update(z, torch.tensor([0, 1, 2, 3])), r"labels must lie in \[0, 3\)")
    _raises(lambda: metric.update(z, torch.tensor([0, -1, 2, 0])), r"labels must lie in \[0, 3\)")
    _raises(lambda: metric.update(z, torch.tensor([0.0, 1.0, 2.0, 0.0])), "integer class indices")
    _raises(lambda: metric.update(z[:, :2], torch.tensor([0, 1, 1, 0])), "num_classes=3")
    _raises(lambda: metric.update(z, torch.tensor([0, 1, 2])), "shape mismatch")
    bad = z.clone()
    bad[1, 1] = float("nan")
    _raises(lambda: metric.update(bad, torch.tensor([0, 1, 2, 0])), "non-finite")
    _raises(lambda: metric.update(z.long(), torch.tensor([0, 1, 2, 0])), "floating-point")
    # probabilities declared, logits given: the values are checked, not reinterpreted
    as_probs = cls(num_classes=3, from_logits=False)
    _raises(lambda: as_probs.update(z * 3, torch.tensor([0, 1, 2, 0])), "probs rows must sum to 1")
    _raises(lambda: as_probs.update(torch.tensor([[1.5, -0.5, 0.0]]), torch.tensor([0])), "non-negative")
    # a rejected batch leaves the state untouched
    p = torch.softmax(z, 1)
    as_probs.update(p, torch.tensor([0, 1, 2, 0]))
    fresh = cls(num_classes=3, from_logits=False)
    fresh.update(p, torch.tensor([0, 1, 2, 0]))
    got, ref = as_probs.compute(), fresh.compute()
    if isinstance(got, BinStats):
        _assert_bins_equal(got, ref)
    else:
        assert float(got) == float(ref)


@pytest.mark.parametrize("cls", [ECE, MCE, AdaptiveECE, ClasswiseECE, ReliabilityBins])
def test_bad_constructor_arguments(cls):
    _raises(lambda: cls(num_classes=3), "from_logits must be True")  # neither: never guessed
    _raises(lambda: cls(num_classes=3, from_logits="auto"), "from_logits must be True")
    _raises(lambda: cls(num_classes=3, from_logits=1), "from_logits must be True")
    _raises(lambda: cls(n_bins=0, num_classes=3, from_logits=True), "n_bins must be >= 1")
    _raises(lambda: cls(num_classes=1, from_logits=True), "num_classes must be an integer >= 2")
    if cls is not AdaptiveECE:
        _raises(lambda: cls(num_classes=3, from_logits=True, closed="both"), "closed must be one of")
    with pytest.raises(InputError, match="no samples accumulated"), pytest.warns(UserWarning):
        cls(num_classes=3, from_logits=True).compute()


def test_classwise_needs_num_classes_and_reliability_binning_is_checked():
    _raises(lambda: ClasswiseECE(from_logits=True), "ClasswiseECE needs num_classes")
    _raises(lambda: ReliabilityBins(from_logits=True, binning="quantile"), "binning must be one of")


# -- optional dependency --------------------------------------------------------------------------------------


def test_missing_torchmetrics_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # makes `import torchmetrics` raise ImportError
    monkeypatch.delitem(sys.modules, "focalcal.integrations.torchmetrics")
    with pytest.raises(ImportError, match=r"pip install 'focalcal\[torchmetrics\]'"):
        importlib.import_module("focalcal.integrations.torchmetrics")


def test_only_the_integration_module_imports_torchmetrics():
    """focalcal's core must work without the optional extra: no other module imports torchmetrics, not even
    lazily inside a function."""
    importers = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(n.split(".")[0] == "torchmetrics" for n in names):
                importers.append(path.relative_to(SRC).as_posix())
    assert sorted(set(importers)) == ["integrations/torchmetrics.py"]
