"""Calibration metrics of Mukhoti et al. (NeurIPS 2020, Sec. 5 and Appendix) and common variants.

Every function takes keyword-only ``logits=`` or ``probs=`` (exactly one; never guessed from the values)
and ``labels=``; accepts torch tensors (any device) or numpy arrays; returns a Python ``float`` as a
fraction (multiply by 100 for the paper's %), NLL in nats.

Shapes and dtypes: ``logits``/``probs`` ``[N, K]`` floating point (K >= 2); ``labels`` ``[N]`` integer in
``[0, K)``. Probabilities are computed in float32 (float64 for float64 input). ``probs`` must be
non-negative with rows summing to 1 within ``PROB_SUM_ATOL = 1e-3``.

Errors: ``ValueError`` naming the problem for shape mismatch, labels outside ``[0, K)``, NaN/inf,
un-normalised or negative probabilities, ``n_bins < 1``, empty input, both or neither of logits/probs.

Bin rules: see :mod:`focalcal.metrics.binning`: equal-width bins ``[lo, hi)`` with the last one closed
(``closed="left"``, the default, as torchmetrics) or ``(lo, hi]`` with the first one closed
(``closed="right"``, as the paper authors' code); equal-mass bins that never split ties.

>>> import torch
>>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
>>> labels = torch.tensor([0, 1, 1, 0])
>>> round(ece(logits=logits, labels=labels, n_bins=15), 4), round(nll(logits=logits, labels=labels), 4)
(0.4296, 0.9907)
"""

from __future__ import annotations

import torch

from ..defaults import BIN_CLOSED, N_BINS
from ..errors import InputError
from ..validation import check_binning, check_closed, check_n_bins, check_norm
from .binning import BinStats, bin_stats
from .kernel import scan

#: Keys of :func:`calibration_summary`, in report order.
SUMMARY_KEYS = ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier")


def calibration_error(
    *,
    logits=None,
    probs=None,
    labels,
    n_bins: int = N_BINS,
    binning: str = "equal_width",
    norm: str = "l1",
    debias: bool = False,
    closed: str = BIN_CLOSED,
) -> float:
    """Top-label binned calibration error (the general form of ECE, AdaECE, MCE and RMS-CE).

    Computed from :func:`focalcal.metrics.reliability_bins` statistics via
    :meth:`BinStats.calibration_error`.

    Args:
        n_bins: number of bins, >= 1 (paper: 15).
        binning: ``"equal_width"`` or ``"equal_mass"``.
        norm: ``"l1"`` (expected calibration error), ``"l2"`` (root-mean-square calibration error) or
            ``"max"`` (maximum calibration error over non-empty bins).
        debias: with ``norm="l2"``, the debiased estimator of Kumar, Liang & Ma (NeurIPS 2019).
        closed: equal-width bin rule, ``"left"`` or ``"right"`` (see the module doc).

    Returns:
        The calibration error as a fraction in [0, 1].

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(calibration_error(logits=logits, labels=labels, n_bins=2, norm="l2"), 4)
    0.0467
    """
    n_bins = check_n_bins(n_bins)
    check_binning(binning)
    check_norm(norm)
    check_closed(closed)
    if debias and norm != "l2":
        raise InputError(f"debias=True is defined for norm='l2' only; got norm={norm!r}")
    sc = scan(logits=logits, probs=probs, labels=labels)
    return bin_stats(sc.confidence, sc.correct, n_bins, binning, closed).calibration_error(norm, debias=debias)


def ece(*, logits=None, probs=None, labels, n_bins: int = N_BINS, norm: str = "l1", closed: str = BIN_CLOSED) -> float:
    """Expected calibration error (Naeini et al. 2015; Guo et al. 2017), as in Mukhoti et al. Sec. 5.

    ``ECE = sum_b |acc_b - conf_b| * count_b / N`` over ``n_bins`` equal-width bins of the top-label
    confidence. ``norm="l2"`` gives the RMS variant, ``norm="max"`` the MCE. Fraction in [0, 1].

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(ece(logits=logits, labels=labels, n_bins=2), 4)  # one non-empty bin: |0.75 - 0.7967|
    0.0467
    """
    return calibration_error(logits=logits, probs=probs, labels=labels, n_bins=n_bins, norm=norm, closed=closed)


def adaptive_ece(*, logits=None, probs=None, labels, n_bins: int = N_BINS, norm: str = "l1") -> float:
    """Adaptive ECE (AdaECE, Mukhoti et al. 2020 Sec. 5; Nixon et al. 2019): ECE over equal-mass bins.

    Ties are never split and row order never matters (see :mod:`focalcal.metrics.binning`). Fraction.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(adaptive_ece(logits=logits, labels=labels, n_bins=2), 4)
    0.37
    """
    return calibration_error(logits=logits, probs=probs, labels=labels, n_bins=n_bins, binning="equal_mass", norm=norm)


def mce(
    *, logits=None, probs=None, labels, n_bins: int = N_BINS, binning: str = "equal_width", closed: str = BIN_CLOSED
) -> float:
    """Maximum calibration error (Naeini et al. 2015): the largest ``|acc_b - conf_b|`` over non-empty bins.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(mce(logits=logits, labels=labels, n_bins=2), 4)
    0.0467
    """
    return calibration_error(
        logits=logits, probs=probs, labels=labels, n_bins=n_bins, binning=binning, norm="max", closed=closed
    )


def classwise_from_diff(diff: torch.Tensor, n: int) -> float:
    k = diff.shape[0]
    return float(diff.abs().sum() / (n * k))


def classwise_ece(*, logits=None, probs=None, labels, n_bins: int = N_BINS, closed: str = BIN_CLOSED) -> float:
    """Classwise ECE (Kull et al. 2019; Mukhoti et al. 2020 Sec. 5).

    For each class k, the equal-width binned calibration error of ``p_k`` against ``1[y = k]``:
    ``CE_k = sum_b count_kb / N * |mean_{i in b} 1[y_i=k] - mean_{i in b} p_ik|``, averaged over the
    ``K`` classes, where K is the width of the score array (not the number of labels present).
    Fraction in [0, 1].

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(classwise_ece(logits=logits, labels=labels, n_bins=2), 4)
    0.1812
    """
    n_bins = check_n_bins(n_bins)
    sc = scan(logits=logits, probs=probs, labels=labels, classwise_bins=n_bins, closed=check_closed(closed))
    return classwise_from_diff(sc.classwise_diff, sc.confidence.shape[0])


def nll(*, logits=None, probs=None, labels) -> float:
    """Mean negative log-likelihood of the labels, in nats.

    From ``logits``: the log-softmax at the label, ``logsumexp(z) - z_y``, in float64 (no clamp).
    From ``probs``: ``-log(max(p_y, tiny))`` with ``tiny = torch.finfo(dtype).tiny`` (the smallest normal
    number of the probs' working dtype), so only an exact 0 is clamped and the result stays finite.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(nll(logits=logits, labels=labels), 4)
    0.9907
    """
    sc = scan(logits=logits, probs=probs, labels=labels, need_nll=True)
    return float(sc.nll.mean())


def brier_score(*, logits=None, probs=None, labels) -> float:
    """Multiclass Brier score (Brier 1950): ``mean_i sum_k (p_ik - 1[y_i = k])^2``, in [0, 2].

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> round(brier_score(logits=logits, labels=labels), 4)
    0.5682
    """
    sc = scan(logits=logits, probs=probs, labels=labels, need_brier=True)
    return float(sc.brier.mean())


def error_rate(*, logits=None, probs=None, labels) -> float:
    """Top-1 error as a fraction: ``mean_i 1[argmax_k p_ik != y_i]`` (ties go to the first class).

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> error_rate(logits=logits, labels=labels)
    0.25
    """
    sc = scan(logits=logits, probs=probs, labels=labels)
    return 1.0 - float(sc.correct.double().mean())


def accuracy(*, logits=None, probs=None, labels) -> float:
    """Top-1 accuracy as a fraction (``1 - error_rate``).

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> accuracy(logits=logits, labels=labels)
    0.75
    """
    return 1.0 - error_rate(logits=logits, probs=probs, labels=labels)


def calibration_summary(
    *, logits=None, probs=None, labels, n_bins: int = N_BINS, closed: str = BIN_CLOSED
) -> dict[str, float]:
    """All of the paper's metrics in one pass: softmax is computed once and shared.

    Args:
        logits: ``[N, K]`` float scores, or
        probs: ``[N, K]`` probabilities (exactly one of the two).
        labels: ``[N]`` int class indices in ``[0, K)``.
        n_bins: bins for ECE, AdaECE, classwise-ECE and MCE (paper: 15).
        closed: equal-width bin rule (ECE, classwise-ECE, MCE), ``"left"`` or ``"right"``.

    Returns:
        ``{"error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier"}`` as Python floats:
        fractions (not %), ``nll`` in nats, ``brier`` in [0, 2].

    Raises:
        ValueError: see the module doc.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.7967
    >>> summary = calibration_summary(logits=logits, labels=labels, n_bins=2)
    >>> [round(summary[k], 4) for k in ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier")]
    [0.25, 0.9907, 0.0467, 0.37, 0.1812, 0.0467, 0.5682]
    """
    return calibration_summary_and_bins(logits=logits, probs=probs, labels=labels, n_bins=n_bins, closed=closed)[0]


def calibration_summary_and_bins(
    *, logits=None, probs=None, labels, n_bins: int = N_BINS, closed: str = BIN_CLOSED
) -> tuple[dict[str, float], BinStats]:
    """:func:`calibration_summary` and the equal-width :func:`~focalcal.metrics.reliability_bins` of the same
    scores from one pass (one softmax): the same numbers as the two calls, for reports that show both.

    Args / Raises: as :func:`calibration_summary`.

    Returns:
        ``(summary, bins)``: the summary dict (fractions, ``nll`` in nats) and a :class:`BinStats` of ``n_bins``
        equal-width bins with rule ``closed``.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> summary, bins = calibration_summary_and_bins(logits=logits, labels=labels, n_bins=2)
    >>> round(summary["ece"], 4), bins.counts.tolist()
    (0.0467, [0, 4])
    """
    n_bins = check_n_bins(n_bins)
    sc = scan(
        logits=logits,
        probs=probs,
        labels=labels,
        need_nll=True,
        need_brier=True,
        classwise_bins=n_bins,
        closed=check_closed(closed),
    )
    n = sc.confidence.shape[0]
    width = bin_stats(sc.confidence, sc.correct, n_bins, "equal_width", closed)
    mass = bin_stats(sc.confidence, sc.correct, n_bins, "equal_mass")
    summary = {
        "error": 1.0 - float(sc.correct.double().mean()),
        "nll": float(sc.nll.mean()),
        "ece": width.calibration_error("l1"),
        "adaptive_ece": mass.calibration_error("l1"),
        "classwise_ece": classwise_from_diff(sc.classwise_diff, n),
        "mce": width.calibration_error("max"),
        "brier": float(sc.brier.mean()),
    }
    return summary, width
