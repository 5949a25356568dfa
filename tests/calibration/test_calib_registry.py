"""The Calibrator interface and registry, and each non-temperature calibrator against a reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from focalcal.calibration import (
    Calibrator,
    DirichletCalibration,
    HistogramBinning,
    IsotonicCalibration,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    available_calibrators,
    build_calibrator,
)
from focalcal.metrics import calibration_summary, nll

NAMES = ["identity", "temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"]


@pytest.fixture(scope="module")
def split():
    g = torch.Generator().manual_seed(0)
    n, k = 1200, 4
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    right = torch.rand(n, generator=g) < 0.75
    tgt = torch.where(right, y, torch.randint(0, k, (n,), generator=g))
    z[torch.arange(n), tgt] += 1.5
    z = z * 3  # overconfident
    return z[:800], y[:800], z[800:], y[800:]


def test_registry_lists_all_and_rejects_unknown():
    assert available_calibrators() == sorted(NAMES)
    with pytest.raises(ValueError, match="unknown calibrator 'platt'; choose one of: dirichlet, histogram, identity"):
        build_calibrator("platt")
    with pytest.raises(ValueError, match="unknown option.*gamma.*valid options: closed, max_iter, method, n_bins"):
        build_calibrator("temperature", gamma=2)
    ts = build_calibrator("temperature", method="ece_grid", n_bins=10)
    assert isinstance(ts, TemperatureScaling) and ts.method == "ece_grid" and ts.n_bins == 10
    with pytest.raises(ValueError, match="unknown calibrator"):
        Calibrator.from_state_dict({"name": "nope"})
    with pytest.raises(ValueError, match="missing 'name'"):
        Calibrator.from_state_dict({"temperature": 2.0})


@pytest.mark.parametrize("name", NAMES)
def test_common_interface(name, split):
    zv, yv, zt, yt = split
    cal = build_calibrator(name)
    assert not cal.is_fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        cal.transform(zt)
    assert cal.fit(zv, yv) is cal
    out = cal.transform(zt)
    assert isinstance(out, torch.Tensor) and out.shape == zt.shape and out.dtype == zt.dtype
    assert torch.isfinite(out).all()
    p = cal.predict_proba(zt)
    torch.testing.assert_close(p.sum(1), torch.ones(len(zt)))
    # numpy in -> numpy out
    out_np = cal.transform(zt.numpy())
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, out.numpy(), rtol=1e-6, atol=1e-6)
    # JSON round trip through the base class, same outputs
    state = json.loads(json.dumps(cal.state_dict()))
    assert state["name"] == name and state["num_classes"] == 4
    back = Calibrator.from_state_dict(state)
    assert type(back) is type(cal)
    torch.testing.assert_close(back.transform(zt), out)
    # metrics accept the output as logits
    calibration_summary(logits=out, labels=yt)


@pytest.mark.parametrize("name", ["temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"])
def test_improves_validation_calibration(name, split):
    zv, yv, zt, yt = split
    cal = build_calibrator(name).fit(zv, yv)
    before = calibration_summary(logits=zv, labels=yv)
    after = calibration_summary(logits=cal.transform(zv), labels=yv)
    assert after["ece"] < before["ece"] / 2
    assert after["nll"] < before["nll"]


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling, DirichletCalibration])
def test_affine_fit_is_a_stationary_point(cls, split):
    zv, yv, _, _ = split
    cal = cls().fit(zv, yv)
    assert cal.converged or cls is DirichletCalibration
    w = cal.weight.clone().requires_grad_(True)
    b = cal.bias.clone().requires_grad_(True)
    x = torch.log_softmax(zv.double(), 1) if cls is DirichletCalibration else zv.double()
    out = x * w + b if cls is VectorScaling else x @ w.T + b
    loss = torch.nn.functional.cross_entropy(out, yv) + cal._penalty(w, b, 4)
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-3 and float(b.grad.abs().max()) < 1e-3
    assert cal.objective == pytest.approx(float(loss.detach()), rel=1e-6)


def test_vector_scaling_beats_or_matches_temperature_on_validation_nll(split):
    zv, yv, _, _ = split
    t = TemperatureScaling().fit(zv, yv)
    v = VectorScaling().fit(zv, yv)
    m = MatrixScaling().fit(zv, yv)
    nt, nv, nm = (nll(logits=c.transform(zv), labels=yv) for c in (t, v, m))
    assert nv <= nt + 1e-6 and nm <= nv + 1e-6  # nested model families


def test_odir_penalty_shrinks_off_diagonal(split):
    zv, yv, _, _ = split
    weak = DirichletCalibration(reg_lambda=0.0, reg_mu=0.0).fit(zv, yv)
    strong = DirichletCalibration(reg_lambda=100.0, reg_mu=100.0).fit(zv, yv)

    def off(w):
        return float((w - torch.diag(torch.diagonal(w))).abs().sum())

    assert off(strong.weight) < off(weak.weight) / 5
    assert float(strong.bias.abs().sum()) < float(weak.bias.abs().sum())


def test_histogram_binning_hand_case():
    # two classes, 2 bins: p_0 in [0, .5) -> bin 0, [.5, 1] -> bin 1
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]], dtype=torch.float64)
    z = torch.log(probs)
    y = torch.tensor([0, 0, 1, 1])
    hb = HistogramBinning(n_bins=2).fit(z, y)
    # class 0: bin 1 holds rows 0-2 (labels 0, 0, 1) -> 2/3; bin 0 holds row 3 (label 1) -> 0
    # class 1: bin 0 holds rows 0-2 -> 1/3; bin 1 holds row 3 -> 1
    torch.testing.assert_close(hb.theta, torch.tensor([[0.0, 2 / 3], [1 / 3, 1.0]], dtype=torch.float64))
    q = hb.predict_proba(z)
    # row 0: (2/3, 1/3) sums to 1 already; row 3: (max(0, 1e-6), 1) renormalised
    torch.testing.assert_close(q[0], torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(q[3], torch.tensor([1e-6, 1.0], dtype=torch.float64) / (1 + 1e-6))


def test_isotonic_matches_sklearn_then_renormalised(split):
    from sklearn.isotonic import IsotonicRegression

    zv, yv, zt, _ = split
    iso = IsotonicCalibration().fit(zv, yv)
    pv, pt = torch.softmax(zv.double(), 1).numpy(), torch.softmax(zt.double(), 1).numpy()
    ref = np.stack(
        [
            IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(pv[:, k], yv.numpy() == k).predict(pt[:, k])
            for k in range(4)
        ],
        1,
    )
    ref = np.maximum(ref, 1e-6)
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(iso.predict_proba(zt.double()).numpy(), ref, atol=1e-12)
