"""Confidence intervals that respect the quantity they bound: the one place every report's intervals come from.

Two kinds, each with the one-line description reports print beside it:

* **Over test samples, one run** (:func:`bootstrap_interval`, used by :func:`focalcal.metrics.bootstrap_ci`):
  the *hull* (smallest interval containing both) of the bootstrap percentile interval and the interval of a
  debiased estimator, clipped to the metric's range.

  Why not the percentile interval: a binned calibration error (ECE, AdaECE, classwise-ECE) is biased upward,
  by up to ``0.8 se`` per bin when a bin's true gap is small (``E|Z + d| - |d|`` for a normal ``Z``), and
  resampling adds the same bias again, so the percentile interval can lie wholly above its own estimate and
  rarely covers the truth for a nearly calibrated model. Why not BCa: its bias correction moves the limits
  only within the bootstrap replicates, and those lie above the truth, so it fails the same way (measured
  below). What works: the debiased estimator ``T_db = sum_c n_c / N (|d_c| - se_c h(~delta_c))`` over the
  bins (cells) c, with ``d_c`` the bin's mean gap (correct minus confidence; for classwise-ECE the class
  indicator minus the class probability), ``se_c`` its standard error, ``h(x) = E|Z + x| - x`` the folded
  normal bias and ``~delta_c = sqrt(max(d_c^2 / se_c^2 - 1, 0))`` (the gap in standard errors, itself
  debiased: plugging in ``|d_c| / se_c`` under-corrects); its interval is the bootstrap pivot
  ``[T_db - q_hi(T_db* - T), T_db - q_lo(T_db* - T)]`` (``T``, the plain estimate, is the truth of the
  bootstrap world). Where the gap is a few standard errors the bias correction over-corrects and the
  percentile interval is right, hence the hull, which always contains the estimate. Metrics without an
  analytic debiased form (MCE, L2 norms, NLL, Brier, error, any callable) use the bootstrap bias-corrected
  estimator ``2 T - mean(T*)``, whose pivot interval is the basic interval ``[2 T - q_hi, 2 T - q_lo]``.

  What is covered: the population value of the *binned* statistic with the same binning (the limit of the
  estimate as N -> infinity), not the binning-free L1 calibration error ``E|P(correct | c) - c|``; the two
  are equal when ``P(correct | c) - c`` keeps its sign within every bin, and the binned value is smaller
  otherwise. Coverage of 95% intervals measured on simulated two-class data with a known miscalibration
  (``c = 0.5 + 0.5 u``, ``u ~ Beta(8, 1)``, correct with probability ``c - s``, so the truth is ``s``; N = 2,000,
  15 bins, 100 replications of 500 resamples each; BCa with a grouped-jackknife acceleration):

  =============  =====  =====  =====  =====  =====
  truth s        0      0.5%   1%     2%     4%
  =============  =====  =====  =====  =====  =====
  ECE hull       0.88   0.97   0.99   1.00   0.97
  ECE perc.      0.00   0.56   0.88   0.96   0.95
  ECE BCa        0.00   0.73   0.89   0.92   0.91
  AdaECE hull    0.86   0.94   0.98   0.99   0.99
  AdaECE perc.   0.00   0.00   0.00   0.65   0.96
  AdaECE BCa     0.00   0.00   0.26   0.84   0.88
  =============  =====  =====  =====  =====  =====

  (Classwise-ECE equals ECE on two classes here.) ``tests/metrics/test_intervals.py`` repeats a nearly
  calibrated case (``s = 0.006 c^2``, truth 0.54%) with 200 replications: hull 0.985 (ECE) and 0.94 (AdaECE),
  percentile 0.535 and 0.00. The hull leans conservative where the gaps are a few standard errors; at a true
  error of exactly 0 it covers less than 95%: no interval of a statistic that is never below its truth reaches
  a boundary at 0 reliably.

* **Over seeds** (:func:`seed_interval`, used by the tables and the claims): the Student-t interval of the mean,
  ``mean +- t(0.975, n - 1) sd / sqrt(n)``, clipped to the range of the quantity (an error or a calibration
  error in [0, 1], a temperature > 0, a paired difference between the difference of the bounds); no interval
  at all below :data:`MIN_SEEDS` seeds, where a t-interval is too wide to say anything (two seeds: ``t = 12.7``).

Every interval contains its estimate (clipping keeps it: the estimate lies in the range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..errors import InputError

#: Fewest seeds for an interval over seeds.
MIN_SEEDS = 3
#: Ranges of the quantities (fractions; NLL in nats): the bounds intervals are clipped to.
UNIT_RANGE = (0.0, 1.0)
NONNEGATIVE = (0.0, math.inf)
UNBOUNDED = (-math.inf, math.inf)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@dataclass(frozen=True)
class SeedInterval:
    """The mean over runs and its interval (``low``/``high`` None below :data:`MIN_SEEDS` runs).

    Attributes:
        mean: the mean of the values.
        low, high: the interval (in the values' units), or None.
        n: number of values.
        method: ``"t"`` (clipped t-interval) or ``"none"``.
        note: the one-line description for reports, e.g. ``"95% t-interval over 5 seeds, clipped to [0, 1]"``.
    """

    mean: float
    low: float | None
    high: float | None
    n: int
    method: str
    note: str


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(b) for b in bounds)
    if not lo < hi:
        raise InputError(f"interval bounds must satisfy low < high; got {bounds!r}")
    return lo, hi


def format_bounds(bounds: tuple[float, float], scale: float = 1.0) -> str:
    """``"[0, 100]"``, ``"[0, inf)"``, ``"(-inf, inf)"``: the range in display units (``scale`` = 100 for %)."""
    lo, hi = bounds

    def f(v: float) -> str:
        return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v * scale:g}")

    return ("(" if lo == -math.inf else "[") + f"{f(lo)}, {f(hi)}" + (")" if hi == math.inf else "]")


def seed_interval(
    values: Sequence[float],
    *,
    bounds: tuple[float, float] = UNBOUNDED,
    level: float = 0.95,
    scale: float = 1.0,
    what: str = "seeds",
) -> SeedInterval:
    """Mean of ``values`` (one per run / seed) with its t-interval clipped to ``bounds``.

    Args:
        values: ``[n]`` floats (e.g. a metric of each seed, or paired differences), in the quantity's units.
        bounds: ``(low, high)`` range of the quantity; the interval is clipped to it. An error or calibration
            error: :data:`UNIT_RANGE`; a temperature or NLL: :data:`NONNEGATIVE`; a paired difference
            ``a - b``: ``(low_a - high_b, high_a - low_b)``.
        level: coverage, 0.95 for a 95% interval.
        scale: display scale of the bounds in :attr:`SeedInterval.note` (100 for %).
        what: what the values are over, for the note ("seeds").

    Returns:
        :class:`SeedInterval`; no interval (``low = high = None``) below :data:`MIN_SEEDS` values or when the
        values are not all finite.

    Raises:
        InputError: no values, ``level`` outside (0, 1), or ``bounds`` with low >= high.
    """
    lo_b, hi_b = _check_bounds(bounds)
    if not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), e.g. 0.95; got {level!r}")
    v = np.asarray(values, dtype=float)
    n = int(v.size)
    if n == 0:
        raise InputError("seed_interval needs at least one value")
    mean = float(v.mean())
    if n < MIN_SEEDS or not np.isfinite(v).all():
        why = f"{n} {what[:-1] if n == 1 and what.endswith('s') else what}" if np.isfinite(v).all() else "not finite"
        return SeedInterval(mean, None, None, n, "none", f"no interval: {why}")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    low, high = max(mean - half, lo_b), min(mean + half, hi_b)
    clipped = f", clipped to {format_bounds((lo_b, hi_b), scale)}" if (lo_b, hi_b) != UNBOUNDED else ""
    note = f"{100 * level:g}% t-interval over {n} {what}{clipped}"
    return SeedInterval(mean, min(low, mean), max(high, mean), n, "t", note)


def bootstrap_note(n_boot: int, alpha: float = 0.05, *, method: str = "hull", over: str = "test samples") -> str:
    """The one-line description of :func:`bootstrap_interval`'s interval, for reports."""
    level = f"{100 * (1 - alpha):g}%"
    if method == "percentile":
        return f"{level} bootstrap percentile interval over {over} ({n_boot:,} resamples)"
    return (
        f"{level} bootstrap interval over {over} ({n_boot:,} resamples): hull of the percentile interval and "
        "the interval of the debiased estimator, clipped to the metric's range"
    )


def bootstrap_interval(
    estimate: float,
    samples: np.ndarray,
    *,
    alpha: float = 0.05,
    debiased: float | None = None,
    debiased_samples: np.ndarray | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
    method: str = "hull",
) -> tuple[float, float]:
    """``(low, high)`` of a bootstrap interval (see the module docstring).

    Args:
        estimate: the statistic ``T`` on the data.
        samples: ``[B]`` bootstrap replicates ``T*``.
        alpha: two-sided level (0.05 -> 95%).
        debiased, debiased_samples: a debiased estimator ``T_db`` on the data and its ``[B]`` replicates; None:
            the bootstrap bias-corrected estimator ``2 T - mean(T*)`` (its pivot interval is the basic one).
        bounds: the range of the statistic; the interval is clipped to it.
        method: ``"hull"`` (default) or ``"percentile"`` (the plain percentile interval, for comparison).

    Returns:
        ``(low, high)``; for ``"hull"`` always ``low <= estimate <= high``.

    Raises:
        InputError: unknown ``method``, ``alpha`` outside (0, 1), or replicates that are not finite.
    """
    if method not in ("hull", "percentile"):
        raise InputError(f"method must be 'hull' or 'percentile'; got {method!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), e.g. 0.05 for a 95% interval; got {alpha!r}")
    lo_b, hi_b = _check_bounds(bounds)
    s = np.asarray(samples, dtype=np.float64)
    if not np.isfinite(s).all():
        raise InputError("the metric returned non-finite values on some resamples")
    q_lo, q_hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    if method == "percentile":
        return float(q_lo), float(q_hi)
    if debiased is None or debiased_samples is None:
        piv_lo, piv_hi = 2 * estimate - q_hi, 2 * estimate - q_lo
    else:
        p_lo, p_hi = np.quantile(np.asarray(debiased_samples, dtype=np.float64) - estimate, [alpha / 2, 1 - alpha / 2])
        piv_lo, piv_hi = debiased - p_hi, debiased - p_lo
    low = min(q_lo, piv_lo, estimate)
    high = max(q_hi, piv_hi, estimate)
    low, high = max(low, lo_b), min(high, hi_b)
    return float(min(low, estimate)), float(max(high, estimate))


def folded_normal_bias(x: Tensor) -> Tensor:
    """``h(x) = E|Z + x| - x`` for ``Z ~ N(0, 1)``, ``x >= 0``: ``sqrt(2/pi) exp(-x^2/2) - 2 x Phi(-x)``."""
    return _SQRT_2_OVER_PI * torch.exp(-0.5 * x * x) - 2.0 * x * torch.special.ndtr(-x)


def debiased_l1(counts: Tensor, sum_gap: Tensor, sum_sq: Tensor, total: float | Tensor) -> Tensor:
    """Debiased L1 binned calibration error from per-cell sums; cells on the last dim, any batch dims.

    Args:
        counts: ``[..., C]`` samples per cell (bin, or class x bin).
        sum_gap: ``[..., C]`` float64 ``sum_i x_i`` per cell, ``x`` = correct minus confidence (classwise: the
            class indicator minus the class probability).
        sum_sq: ``[..., C]`` float64 ``sum_i x_i^2`` per cell.
        total: the plain estimate's denominator (N; N K for classwise-ECE).

    Returns:
        ``[...]`` float64 ``sum_c (|sum_gap_c| - n_c se_c h(~delta_c)) / total`` (see the module docstring); it
        can be negative. Cells with fewer than 2 samples are not corrected.
    """
    n = counts.double()
    n1 = n.clamp(min=1)
    d = sum_gap / n1
    var = ((sum_sq - n * d * d) / (n - 1).clamp(min=1)).clamp(min=0)
    se = (var / n1).sqrt()
    ok = (n >= 2) & (se > 0)
    delta = torch.where(ok, d.abs() / torch.where(ok, se, torch.ones_like(se)), torch.zeros_like(se))
    shrunk = (delta * delta - 1).clamp(min=0).sqrt()
    bias = torch.where(ok, se * folded_normal_bias(shrunk), torch.zeros_like(se))
    return (sum_gap.abs() - n * bias).sum(-1) / total


def difference_bounds(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The range of ``x - y`` for ``x`` in ``a`` and ``y`` in ``b``: ``(a_low - b_high, a_high - b_low)``."""
    return a[0] - b[1], a[1] - b[0]
