"""Temperature scaling: optimality, invariants, bounds, the paper's ECE grid, and serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from focalcal.calibration import PAPER_GRID, Calibrator, TemperatureScaling
from focalcal.metrics import ece, nll


def overconfident(seed: int, n: int = 3000, k: int = 10, scale: float = 4.0, acc: float = 0.7):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    right = torch.rand(n, generator=g) < acc
    target = torch.where(right, y, torch.randint(0, k, (n,), generator=g))
    z[torch.arange(n), target] += 2.0
    return z * scale, y


def _nll_t(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """NLL for a vector of temperatures, float64."""
    zz = z.double()[None] / t[:, None, None]
    return torch.nn.functional.cross_entropy(zz.permute(0, 2, 1), y[None].expand(len(t), -1), reduction="none").mean(1)


@pytest.mark.parametrize("seed, scale", [(0, 4.0), (1, 0.3), (2, 1.0), (3, 8.0)])
def test_nll_temperature_is_the_grid_minimum(seed, scale):
    z, y = overconfident(seed, n=1500, scale=scale)
    ts = TemperatureScaling().fit(z, y)
    assert ts.converged and not ts.at_bound
    # brute force: a 1e-4 grid around the fit, coarse scan first to locate the basin
    coarse = torch.exp(torch.linspace(np.log(0.02), np.log(50), 400, dtype=torch.float64))
    t0 = float(coarse[_nll_t(z, y, coarse).argmin()])
    fine = torch.arange(t0 * 0.97, t0 * 1.03, 1e-4, dtype=torch.float64)
    t_best = float(fine[_nll_t(z, y, fine).argmin()])
    assert ts.temperature == pytest.approx(t_best, abs=1e-3)
    assert ts.objective == pytest.approx(nll(logits=z.double() / ts.temperature, labels=y), rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_never_raises_nll_and_never_changes_argmax(seed):
    z, y = overconfident(seed, n=800, scale=[0.5, 2.0, 5.0, 10.0][seed])
    ts = TemperatureScaling().fit(z, y)
    out = ts.transform(z)
    assert nll(logits=out, labels=y) <= nll(logits=z, labels=y) + 1e-12
    assert torch.equal(out.argmax(1), z.argmax(1))
    assert out.dtype == z.dtype
    torch.testing.assert_close(out, z / ts.temperature)


def test_direction_overconfident_gets_t_above_one():
    z, y = overconfident(0, scale=6.0)
    assert TemperatureScaling().fit(z, y).temperature > 1.5
    z2, y2 = overconfident(1, scale=0.2)
    assert TemperatureScaling().fit(z2, y2).temperature < 1.0


@pytest.mark.parametrize(
    "case",
    ["separable", "all_wrong", "constant", "huge", "tiny", "single_sample"],
)
def test_adversarial_inputs_keep_t_positive(case):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=g)
    if case == "separable":  # every prediction right with a margin: NLL -> 0 as T -> 0
        y = z.argmax(1)
        z = z * 50
    elif case == "all_wrong":  # every prediction wrong: NLL minimised by T -> infinity
        y = (z.argmax(1) + 1) % 5
        z = z * 50
    elif case == "constant":
        z = torch.zeros(200, 5)
        y = torch.randint(0, 5, (200,), generator=g)
    elif case == "huge":
        z = z * 1e6
        y = torch.randint(0, 5, (200,), generator=g)
    elif case == "tiny":
        z = z * 1e-8
        y = torch.randint(0, 5, (200,), generator=g)
    else:
        z, y = z[:1], torch.tensor([2])
    ts = TemperatureScaling().fit(z, y)
    assert ts.temperature > 0 and np.isfinite(ts.temperature)
    assert ts.t_min <= ts.temperature <= ts.t_max
    assert ts.converged
    assert nll(logits=ts.transform(z), labels=y) <= nll(logits=z, labels=y) + 1e-9
    if case == "separable":
        assert ts.at_bound and ts.temperature == ts.t_min
    if case == "all_wrong":
        assert ts.at_bound and ts.temperature == ts.t_max
    if case == "constant":
        assert ts.temperature == 1.0 and not ts.at_bound


def _np_ece(z: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Independent numpy ECE (float64 softmax, equal-width bins [lo, hi), last bin closed)."""
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += abs((pred[m] == y[m]).mean() - conf[m].mean()) * m.sum()
    return total / len(y)


def test_ece_grid_picks_the_minimal_ece_grid_point():
    z, y = overconfident(5, n=1000, scale=3.0)
    ts = TemperatureScaling(method="ece_grid", n_bins=15).fit(z, y)
    assert ts.temperature in PAPER_GRID
    zn, yn = z.double().numpy(), y.numpy()
    eces = np.array([_np_ece(zn / t, yn, 15) for t in PAPER_GRID])
    # the chosen T has the smallest recomputed ECE (up to float32-vs-float64 rounding of the softmax)
    assert _np_ece(zn / ts.temperature, yn, 15) <= eces.min() + 1e-6
    assert ts.objective == pytest.approx(eces.min(), abs=1e-6)
    # and the stored per-grid values are exactly what the public metric gives
    for i in (0, 9, int(np.argmin(eces)), 99):
        assert ts.grid_values[i] == pytest.approx(ece(logits=z / PAPER_GRID[i], labels=y, n_bins=15), abs=1e-12)
    assert ts.objective <= ece(logits=z, labels=y, n_bins=15)
    assert len(PAPER_GRID) == 100 and PAPER_GRID[0] == 0.1 and PAPER_GRID[-1] == 10.0 and PAPER_GRID[9] == 1.0


def test_ece_grid_respects_n_bins():
    z, y = overconfident(6, n=600, scale=3.0)
    ts = TemperatureScaling(method="ece_grid", n_bins=5).fit(z, y)
    zn, yn = z.double().numpy(), y.numpy()
    eces = np.array([_np_ece(zn / t, yn, 5) for t in PAPER_GRID])
    assert _np_ece(zn / ts.temperature, yn, 5) <= eces.min() + 1e-6
    assert ts.grid_values[0] == pytest.approx(ece(logits=z / 0.1, labels=y, n_bins=5), abs=1e-12)


@pytest.mark.parametrize("method", ["nll", "ece_grid"])
def test_state_dict_roundtrip_json(method):
    z, y = overconfident(7, n=500)
    ts = TemperatureScaling(method=method, n_bins=10).fit(z, y)
    d = json.loads(json.dumps(ts.state_dict()))
    assert d["name"] == "temperature" and d["method"] == method and d["num_classes"] == 10
    for restored in (TemperatureScaling.from_state_dict(d), Calibrator.from_state_dict(d)):
        assert isinstance(restored, TemperatureScaling)
        assert restored.temperature == ts.temperature
        assert restored.converged == ts.converged and restored.at_bound == ts.at_bound
        torch.testing.assert_close(restored.transform(z), ts.transform(z))


def test_numpy_in_numpy_out():
    z, y = overconfident(8, n=300)
    ts = TemperatureScaling().fit(z.numpy(), y.numpy())
    out = ts.transform(z.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, z.numpy() / ts.temperature)
    assert ts.temperature == pytest.approx(TemperatureScaling().fit(z, y).temperature, rel=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="method must be one of 'nll', 'ece_grid'"):
        TemperatureScaling(method="grid")
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaling().transform(torch.zeros(2, 3))
    z, y = overconfident(9, n=50)
    with pytest.raises(ValueError, match="shape mismatch"):
        TemperatureScaling().fit(z, y[:10])
    with pytest.raises(ValueError, match="non-finite"):
        TemperatureScaling().fit(torch.where(z > 3, float("nan"), z), y)
    ts = TemperatureScaling().fit(z, y)
    with pytest.raises(ValueError, match="logits has 4 classes but the calibrator was fitted on 10"):
        ts.transform(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="t_min"):
        TemperatureScaling(t_min=2.0)
