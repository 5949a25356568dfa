"""OOD scores (entropy, MSP, energy) and detection metrics (AUROC, AUPR-in/out, FPR@95%TPR)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, roc_auc_score

from focalcal.metrics.ood import (
    detection_metrics,
    energy_score,
    entropy_score,
    msp_score,
    ood_metrics,
    ood_roc_curve,
    ood_scores,
)

# ---------------------------------------------------------------------------------------------- scores
ENTROPY_1_0 = 0.5822  # -(p ln p + q ln q), p = e/(1+e) = 0.7311, q = 0.2689


def test_entropy_ignores_minus_inf_logits():
    with_inf = entropy_score(torch.tensor([[1.0, 0.0, -math.inf]]))
    without = entropy_score(torch.tensor([[1.0, 0.0]]))
    assert np.isfinite(with_inf).all()
    assert with_inf[0] == pytest.approx(without[0], abs=1e-12)
    assert with_inf[0] == pytest.approx(ENTROPY_1_0, abs=1e-4)


def test_msp_and_energy_with_minus_inf_logits():
    z = np.array([[1.0, 0.0, -np.inf]])
    p = math.e / (1 + math.e)
    assert msp_score(z)[0] == pytest.approx(1 - p, abs=1e-12)
    assert energy_score(z)[0] == pytest.approx(-math.log(1 + math.e), abs=1e-12)
    assert energy_score(z, temperature=2.0)[0] == pytest.approx(-2 * math.log(math.exp(0.5) + 1), abs=1e-12)


def test_saturated_float32_probabilities_stay_finite_and_ordered():
    # in float32 softmax([60, 0]) == [1, 0] exactly; the scores must still resolve the two rows
    z = torch.tensor([[60.0, 0.0], [80.0, 0.0]], dtype=torch.float32)
    assert torch.softmax(z, 1)[:, 0].eq(1).all()
    for f in (entropy_score, msp_score, energy_score):
        s = f(z)
        assert np.isfinite(s).all(), f.__name__
        assert s[0] > s[1], f.__name__  # the less confident row is more OOD
    assert msp_score(z)[0] == pytest.approx(math.exp(-60), rel=1e-6)
    eps = math.exp(-60)  # entropy of [1/(1+eps), eps/(1+eps)] = log1p(eps) + 60 eps/(1+eps) ~ 61 eps
    assert entropy_score(z)[0] == pytest.approx(61 * eps, rel=1e-9)
    assert entropy_score(torch.tensor([[1000.0, -1000.0]]))[0] == 0.0


def test_uniform_logits_give_log_k_entropy():
    z = torch.zeros(3, 10)
    np.testing.assert_allclose(entropy_score(z), math.log(10), rtol=1e-12)
    np.testing.assert_allclose(msp_score(z), 0.9, rtol=1e-12)
    assert set(ood_scores(z)) == {"entropy", "msp", "energy"}


@pytest.mark.parametrize("bad", [[[math.nan, 0.0]], [[math.inf, 0.0]], [[-math.inf, -math.inf]]])
def test_invalid_logits_raise(bad):
    for f in (entropy_score, msp_score, energy_score):
        with pytest.raises(ValueError):
            f(torch.tensor(bad))


def test_unknown_score_name_lists_valid_ones():
    with pytest.raises(ValueError, match="entropy"):
        ood_scores(torch.zeros(2, 3), ["odin"])


# ---------------------------------------------------------------------------------------------- metrics
def test_hand_computed_case():
    # in = 1, 2, 3; out = 2.5, 4. Pairs (out > in): 4 beats 3, 2.5 beats 2 -> AUROC 5/6.
    # 95% TPR needs both OOD flagged: threshold 2.5 flags ID score 3 -> FPR 1/3.
    # AUPR-out (OOD positive, ranking 4o 3i 2.5o 2i 1i): 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # AUPR-in (ID positive, -score, ranking 1i 2i 2.5o 3i 4o): 1/3 + 1/3 + 1/3 * 3/4 = 11/12.
    m = ood_metrics([1.0, 2.0, 3.0], [2.5, 4.0])
    assert m["auroc"] == pytest.approx(5 / 6)
    assert m["fpr_at_95_tpr"] == pytest.approx(1 / 3)
    assert m["aupr_out"] == pytest.approx(5 / 6)
    assert m["aupr_in"] == pytest.approx(11 / 12)


def _fpr_at_95_brute_force(s_in, s_out):
    best = 1.0
    for thr in np.unique(np.concatenate([s_in, s_out])):
        if (s_out >= thr).mean() >= 0.95:
            best = min(best, (s_in >= thr).mean())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(0, 1, 400).round(1)  # rounding makes ties
    s_out = rng.normal(1, 1.5, 250).round(1)
    y = np.r_[np.zeros(400), np.ones(250)]
    s = np.r_[s_in, s_out]
    m = ood_metrics(s_in, s_out)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert m["fpr_at_95_tpr"] == pytest.approx(_fpr_at_95_brute_force(s_in, s_out), abs=1e-12)
    # Mann-Whitney form of the AUROC, ties counted half
    diff = s_out[:, None] - s_in[None, :]
    assert m["auroc"] == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean(), abs=1e-12)
    assert detection_metrics(torch.tensor(s), torch.tensor(y.astype(bool))) == m


def test_ties_give_chance_and_separation_gives_perfect():
    m = ood_metrics(np.ones(50), np.ones(30))
    assert m["auroc"] == 0.5 and m["fpr_at_95_tpr"] == 1.0
    m = ood_metrics(np.arange(10.0), np.arange(10.0) + 100)
    assert m["auroc"] == 1.0 and m["fpr_at_95_tpr"] == 0.0
    assert m["aupr_in"] == pytest.approx(1.0) and m["aupr_out"] == pytest.approx(1.0)
    assert ood_metrics(np.arange(10.0) + 100, np.arange(10.0))["auroc"] == 0.0  # wrong sign: inverted


def test_one_class_raises():
    with pytest.raises(ValueError, match="one class"):
        ood_metrics([0.1, 0.2], [])
    with pytest.raises(ValueError, match="one class"):
        detection_metrics([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError, match="one class"):
        ood_roc_curve([], [1.0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics([0.1, math.nan], [0.3])
    with pytest.raises(ValueError, match="equal length"):
        detection_metrics([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="boolean"):
        detection_metrics([0.1, 0.2], [0, 2])


def test_roc_curve_runs_from_origin_to_corner():
    fpr, tpr = ood_roc_curve([0.0, 1.0, 2.0], [1.5, 3.0])
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(5 / 6)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(2, 12)),
        elements=st.floats(-300, 300, allow_nan=False, allow_infinity=False),
    ),
    st.floats(-50, 50),
)
def test_score_ranges_and_shift_invariance(z, c):
    k = z.shape[1]
    h, m, e = entropy_score(z), msp_score(z), energy_score(z)
    assert np.all((h >= 0) & (h <= math.log(k) + 1e-9))
    assert np.all((m >= 0) & (m <= 1 - 1 / k + 1e-12))
    np.testing.assert_allclose(entropy_score(z + c), h, atol=1e-9)
    np.testing.assert_allclose(msp_score(z + c), m, atol=1e-12)
    np.testing.assert_allclose(energy_score(z + c), e - c, atol=1e-9)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(m, 1 - p.max(1), atol=1e-12)
