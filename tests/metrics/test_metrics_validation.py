"""Clear ValueErrors for bad input, for every public metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcal import metrics as M

FUNCS = [
    M.ece,
    M.adaptive_ece,
    M.classwise_ece,
    M.mce,
    M.nll,
    M.brier_score,
    M.error_rate,
    M.calibration_summary,
    M.reliability_bins,
    M.calibration_error,
]
Z = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 0, 1, 2])
P = torch.softmax(Z, 1)


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": Y}, "exactly one of logits= or probs= .got neither"),
        ({"logits": Z, "probs": P, "labels": Y}, "exactly one of logits= or probs= .got both"),
        ({"logits": Z, "labels": Y[:5]}, "shape mismatch: 6 rows of scores but 5 labels"),
        ({"logits": Z[:, :, None], "labels": Y}, r"shape \[N, K\]"),
        ({"logits": Z[:, :1], "labels": Y}, "need K >= 2"),
        ({"logits": Z[:0], "labels": Y[:0]}, "empty"),
        ({"logits": Z, "labels": Y + 1}, r"labels must lie in \[0, 3\).*found 3"),
        ({"logits": Z, "labels": Y - 1}, r"labels must lie in \[0, 3\).*found -1"),
        ({"logits": Z, "labels": Y.float()}, "integer class indices"),
        ({"logits": Z, "labels": torch.nn.functional.one_hot(Y, 3)}, r"labels must have shape \[N\]"),
        ({"logits": Z.long(), "labels": Y}, "floating-point"),
        ({"logits": torch.where(Z > 1, float("nan"), Z), "labels": Y}, "non-finite.*NaN"),
        ({"logits": torch.where(Z > 1, float("inf"), Z), "labels": Y}, "non-finite.*inf"),
        ({"logits": torch.where(Z > 1, -float("inf"), Z), "labels": Y}, "non-finite"),
        ({"probs": torch.where(P > 0.5, float("nan"), P), "labels": Y}, "non-finite"),
        ({"probs": Z, "labels": Y}, "sum to 1|non-negative"),
        ({"probs": P * 1.01, "labels": Y}, r"sum to 1 \(tolerance 0.001\)"),
        ({"probs": torch.tensor([[1.2, -0.2, 0.0]] * 6), "labels": Y}, "non-negative"),
    ],
)
def test_bad_inputs_raise_clear_errors(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


@pytest.mark.parametrize(
    "fn",
    [M.ece, M.adaptive_ece, M.classwise_ece, M.mce, M.calibration_summary, M.reliability_bins, M.calibration_error],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True, "15"])
def test_bad_n_bins(fn, n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        fn(logits=Z, labels=Y, n_bins=n_bins)


def test_bad_norm_binning_debias():
    with pytest.raises(ValueError, match="norm must be one of 'l1', 'l2', 'max'"):
        M.ece(logits=Z, labels=Y, norm="l3")
    with pytest.raises(ValueError, match="binning must be one of"):
        M.calibration_error(logits=Z, labels=Y, binning="quantile")
    with pytest.raises(ValueError, match="debias=True is defined for norm='l2' only"):
        M.calibration_error(logits=Z, labels=Y, debias=True)


def test_positional_arguments_are_rejected():
    with pytest.raises(TypeError):
        M.ece(Z, Y)  # keyword-only: never guess whether scores are logits or probabilities


def test_probabilities_are_not_guessed_from_values():
    # logits that happen to lie in [0, 1] are still treated as logits (softmax is applied)
    z = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    y = torch.tensor([0, 1])
    conf = torch.softmax(z, 1).max(1).values
    expected = float((1 - conf).mean())  # both right, each in its own bin
    assert M.ece(logits=z, labels=y) == pytest.approx(expected)
    assert M.ece(probs=z, labels=y) == pytest.approx(float((1 - z.max(1).values).mean()))


def test_numpy_and_lists_and_dtypes():
    zn = Z.numpy()
    assert M.ece(logits=zn, labels=Y.numpy()) == M.ece(logits=Z, labels=Y)
    assert M.nll(logits=zn.astype(np.float64), labels=Y.numpy().astype(np.int32)) == pytest.approx(
        M.nll(logits=Z, labels=Y), rel=1e-6
    )
    assert M.error_rate(probs=P.tolist(), labels=Y.tolist()) == M.error_rate(probs=P, labels=Y)
    ro = zn.copy()
    ro.flags.writeable = False
    assert M.ece(logits=ro, labels=Y.numpy()) == M.ece(logits=Z, labels=Y)
    # half precision input: softmax computed in float32
    assert M.ece(logits=Z.half(), labels=Y) == pytest.approx(M.ece(logits=Z.half().float(), labels=Y))
    assert M.ece(logits=Z.bfloat16(), labels=Y) == pytest.approx(M.ece(logits=Z.bfloat16().float(), labels=Y))


def test_probs_tolerance_is_documented_value():
    from focalcal.validation import PROB_SUM_ATOL

    assert PROB_SUM_ATOL == 1e-3
    p = P.double() * (1 + 0.9e-3)  # rows off by at most 0.9e-3: accepted
    M.ece(probs=p, labels=Y)
