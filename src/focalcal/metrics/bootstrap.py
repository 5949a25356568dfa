"""Bootstrap confidence intervals for every metric (Efron & Tibshirani 1993), over test samples.

The interval is the hull of the percentile interval and the interval of a debiased estimator, clipped to the
metric's range (:func:`focalcal.metrics.intervals.bootstrap_interval`, whose docstring says why, with the
coverage measured on simulated data); ``method="percentile"`` gives the plain percentile interval.

Resampling is vectorised: the resample indices are drawn as a ``[n_boot, N]`` tensor (in chunks that bound
memory) from a seeded ``torch.Generator``, and the per-sample quantities (confidence, correctness, NLL,
Brier, classwise bin contributions) are computed once from one softmax pass and then gathered per resample.
Binned metrics are binned for all resamples at once (:func:`~focalcal.metrics.binning.bin_sums` with a
batch dimension); classwise-ECE uses a sparse ``[N, K * n_bins]`` matrix of per-sample bin contributions
multiplied by the resample multiplicities. The L1 binned metrics (ECE, AdaECE, classwise-ECE) also yield
their debiased estimator (:func:`~focalcal.metrics.intervals.debiased_l1`) from the same per-bin sums of each
resample. Other callables fall back to a loop over resamples that still reuses the probabilities (softmax is
never redone).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..defaults import BIN_CLOSED, N_BINS
from ..errors import InputError
from ..validation import check_binning, check_closed, check_labels, check_n_bins, check_norm, pick_scores, work_dtype
from . import calibration as C
from .binning import batched_calibration_error, equal_mass_index
from .intervals import NONNEGATIVE, UNBOUNDED, UNIT_RANGE, bootstrap_interval, bootstrap_note, debiased_l1
from .kernel import equal_width_edges, equal_width_index, scan_tensor

#: Upper bound on the elements of one block materialised at once (64 MiB of int64 / float64): the ``[resamples,
#: N]`` resample indices and, per batch of resamples, the widest per-resample block (``[resamples, 5 K n_bins]``
#: for classwise-ECE); a single resample wider than this is computed alone.
CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class BootstrapResult:
    """A metric with its bootstrap interval (all in the metric's units: fractions / nats).

    Attributes:
        estimate: the metric on the full data.
        low, high: the interval (:func:`~focalcal.metrics.intervals.bootstrap_interval`); with
            ``method="percentile"`` the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the replicates.
        std: bootstrap standard error.
        n_boot, alpha, seed: the settings used.
        samples: ``[n_boot]`` float64 bootstrap replicates.
        method: ``"hull"`` or ``"percentile"``.
        debiased: the debiased estimator on the full data (the L1 binned metrics), else None.
    """

    estimate: float
    low: float
    high: float
    std: float
    n_boot: int
    alpha: float
    seed: int
    samples: np.ndarray
    method: str = "hull"
    debiased: float | None = None

    @property
    def note(self) -> str:
        """The one-line description of the interval, for reports."""
        return bootstrap_note(self.n_boot, self.alpha, method=self.method)

    def to_dict(self) -> dict[str, float]:
        """JSON-able summary (without the replicates)."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "std": self.std,
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "seed": self.seed,
        }


class _Data:
    """Per-sample quantities shared by all resamples (computed lazily, each at most once)."""

    def __init__(self, scores: Tensor, y: Tensor, from_logits: bool) -> None:
        self.scores, self.y, self.from_logits = scores, y, from_logits
        self.n, self.k = scores.shape
        sc = scan_tensor(scores, y, from_logits=from_logits, need_nll=True, need_brier=True)
        self.conf, self.correct, self.nll, self.brier = sc.confidence, sc.correct, sc.nll, sc.brier
        self.gap = self.correct.double() - self.conf.double()  # [N] correct minus confidence
        self._probs: Tensor | None = None
        self._cw: dict[int, tuple[Tensor, Tensor]] = {}
        self._width: dict[tuple[int, str], Tensor] = {}

    @property
    def probs(self) -> Tensor:
        if self._probs is None:
            s = self.scores
            self._probs = torch.softmax(s, 1, dtype=work_dtype(s)) if self.from_logits else s.to(work_dtype(s))
        return self._probs

    def width_parts(self, n_bins: int, closed: str = BIN_CLOSED) -> Tensor:
        """Sparse ``[3 n_bins, N]``: each sample puts 1, its gap ``x`` (correct minus confidence) and ``x^2`` at its
        equal-width bin in row blocks 0, 1, 2 (a sample's bin is the same in every resample)."""
        if (n_bins, closed) not in self._width:
            c = self.conf
            b = equal_width_index(c, equal_width_edges(n_bins, c.dtype, c.device), closed)
            cols = torch.arange(self.n, device=c.device)
            x = self.gap
            mat = torch.sparse_coo_tensor(
                torch.stack([torch.cat([b, b + n_bins, b + 2 * n_bins]), torch.cat([cols, cols, cols])]),
                torch.cat([torch.ones_like(x), x, x * x]),
                (3 * n_bins, self.n),
                check_invariants=False,
            ).coalesce()
            self._width[(n_bins, closed)] = mat
        return self._width[(n_bins, closed)]

    def classwise_parts(self, n_bins: int, closed: str = BIN_CLOSED) -> tuple[Tensor, Tensor]:
        """``(sparse [5 K n, N], probs [N, K])``, five row blocks of ``K n`` rows each, indexed by (k, bin): the
        entries outside the first bin put ``p_ik`` (block 0), ``p_ik^2`` (block 2) and 1 (block 4) at (k, bin
        of p_ik); each sample puts 1 (block 1) and ``p_{i y_i}`` (block 3) at (y_i, bin of p_{i y_i})."""
        if (n_bins, closed) not in self._cw:
            p = self.probs
            k, n = self.k, self.n
            edges = equal_width_edges(n_bins, p.dtype, p.device)
            outside = p > edges[1] if closed == "right" else p >= edges[1]
            r, c = outside.nonzero(as_tuple=True)
            v = p[r, c]
            row_hi = c * n_bins + equal_width_index(v, edges, closed)
            py = p.gather(1, self.y[:, None]).squeeze(1)
            row_y = k * n_bins + self.y * n_bins + equal_width_index(py, edges, closed)
            kn = k * n_bins
            ar = torch.arange(n, device=p.device)
            v64, ones = v.double(), torch.ones(n, dtype=torch.float64, device=p.device)
            rows = torch.cat([row_hi, row_y, row_hi + 2 * kn, row_y + 2 * kn, row_hi + 4 * kn])
            cols = torch.cat([r, ar, r, ar, r])
            vals = torch.cat([v64, ones, v64 * v64, py.double(), torch.ones_like(v64)])
            mat = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), vals, (5 * kn, n), check_invariants=False
            ).coalesce()
            self._cw[(n_bins, closed)] = (mat, p)
        return self._cw[(n_bins, closed)]


def _resample_width(d: _Data, metric_fn: Callable, kw: dict[str, Any]) -> int:
    """Elements of the widest block one resample allocates: ``N`` (indices, multiplicities) and, for
    classwise-ECE (alone or in ``calibration_summary``), ``5 K n_bins`` float64 per-(class, bin) sums."""
    width = d.n
    if metric_fn is C.classwise_ece or metric_fn is C.calibration_summary:
        width = max(width, 5 * d.k * kw.get("n_bins", N_BINS))
    return width


def _multiplicities(idx: Tensor, n: int) -> Tensor:
    """``[B, N]`` float64: how often each sample occurs in each resample."""
    b = idx.shape[0]
    flat = (idx + torch.arange(b, device=idx.device)[:, None] * n).reshape(-1)
    return torch.bincount(flat, minlength=b * n).view(b, n).double()


#: ``(replicates [B], debiased replicates [B] or None)`` of one batch of resamples.
Batch = tuple[Tensor, Tensor | None]


def _classwise_batch(d: _Data, idx: Tensor, n_bins: int, closed: str = BIN_CLOSED) -> Batch:
    mat, p = d.classwise_parts(n_bins, closed)
    k, kn = d.k, d.k * n_bins
    w = _multiplicities(idx, d.n)  # [B, N]
    parts = torch.sparse.mm(mat, w.T).T  # [B, 5 K n]
    hi, lab, hi_sq, lab_p, cnt = (parts[:, j * kn : (j + 1) * kn].reshape(-1, k, n_bins) for j in range(5))
    pd = p.double()
    col = w @ pd  # [B, K] sum of p over each resample
    col_sq = w @ (pd * pd)
    sum_p, sum_sq, counts = hi.clone(), hi_sq.clone(), cnt.clone()
    sum_p[:, :, 0] += col - hi.sum(2)
    sum_sq[:, :, 0] += col_sq - hi_sq.sum(2)
    counts[:, :, 0] += d.n - cnt.sum(2)
    gap = lab - sum_p  # sum of 1[y = k] - p_ik per (class, bin)
    gap_sq = lab - 2 * lab_p + sum_sq  # sum of (1[y = k] - p_ik)^2
    total = d.n * k
    plain = gap.abs().sum((1, 2)) / total
    return plain, debiased_l1(counts.reshape(-1, kn), gap.reshape(-1, kn), gap_sq.reshape(-1, kn), total)


def _binned_l1_batch(d: _Data, idx: Tensor, n_bins: int, binning: str, closed: str = BIN_CLOSED) -> Batch:
    """ECE / AdaECE of each resample and its debiased estimator, from per-bin counts and gap sums."""
    if binning == "equal_width":  # fixed bins: resample multiplicities times per-sample bin contributions
        parts = torch.sparse.mm(d.width_parts(n_bins, closed), _multiplicities(idx, d.n).T).T
        counts, s1, s2 = parts[:, :n_bins], parts[:, n_bins : 2 * n_bins], parts[:, 2 * n_bins :]
        return s1.abs().sum(1) / d.n, debiased_l1(counts, s1, s2, d.n)
    b = equal_mass_index(d.conf[idx], n_bins)
    rows = idx.shape[0]
    flat = (b + torch.arange(rows, device=idx.device)[:, None] * n_bins).reshape(-1)
    x = d.gap[idx].reshape(-1)
    size = rows * n_bins
    counts = torch.bincount(flat, minlength=size).view(rows, n_bins)
    s1 = torch.bincount(flat, weights=x, minlength=size).view(rows, n_bins)
    s2 = torch.bincount(flat, weights=x * x, minlength=size).view(rows, n_bins)
    return s1.abs().sum(1) / d.n, debiased_l1(counts, s1, s2, d.n)


# The batched replays of the metrics take every keyword argument of their metric, without defaults:
# bootstrap_ci fills in the metric's own (_keyword_defaults), so each default is stated once, in the metric.


def _calibration_error_batch(
    d: _Data, idx: Tensor, n_bins: int, binning: str, norm: str, debias: bool, closed: str
) -> Batch:
    if norm == "l1":
        return _binned_l1_batch(d, idx, n_bins, binning, closed)
    conf, correct = d.conf[idx], d.correct[idx]
    return batched_calibration_error(conf, correct, n_bins, binning, norm, debias=debias, closed=closed), None


def _ece_batch(d: _Data, idx: Tensor, n_bins: int, norm: str, closed: str) -> Batch:
    return _calibration_error_batch(d, idx, n_bins, "equal_width", norm, False, closed)


def _adaece_batch(d: _Data, idx: Tensor, n_bins: int, norm: str) -> Batch:
    return _calibration_error_batch(d, idx, n_bins, "equal_mass", norm, False, BIN_CLOSED)  # no edges: unused


def _mce_batch(d: _Data, idx: Tensor, n_bins: int, binning: str, closed: str) -> Batch:
    return batched_calibration_error(d.conf[idx], d.correct[idx], n_bins, binning, "max", closed=closed), None


def _keyword_defaults(metric_fn: Callable) -> dict[str, Any]:
    """The defaults of ``metric_fn``'s keyword arguments but the scores (``n_bins``, ``closed``, ...)."""
    params = inspect.signature(metric_fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty and p.name not in ("logits", "probs")}


_BATCHED: dict[Callable, Callable[..., Batch]] = {
    C.ece: _ece_batch,
    C.adaptive_ece: _adaece_batch,
    C.mce: _mce_batch,
    C.calibration_error: _calibration_error_batch,
    C.classwise_ece: lambda d, idx, n_bins, closed: _classwise_batch(d, idx, n_bins, closed),
    C.nll: lambda d, idx: (d.nll[idx].mean(1), None),
    C.brier_score: lambda d, idx: (d.brier[idx].mean(1), None),
    C.error_rate: lambda d, idx: (1.0 - d.correct[idx].double().mean(1), None),
    C.accuracy: lambda d, idx: (d.correct[idx].double().mean(1), None),
}
#: The range of each metric (fractions; NLL in nats), which its interval is clipped to.
_BOUNDS: dict[Callable, tuple[float, float]] = {
    C.ece: UNIT_RANGE,
    C.adaptive_ece: UNIT_RANGE,
    C.mce: UNIT_RANGE,
    C.calibration_error: UNIT_RANGE,
    C.classwise_ece: UNIT_RANGE,
    C.nll: NONNEGATIVE,
    C.brier_score: (0.0, 2.0),
    C.error_rate: UNIT_RANGE,
    C.accuracy: UNIT_RANGE,
}
_SUMMARY_BOUNDS = {
    "error": UNIT_RANGE,
    "nll": NONNEGATIVE,
    "ece": UNIT_RANGE,
    "adaptive_ece": UNIT_RANGE,
    "classwise_ece": UNIT_RANGE,
    "mce": UNIT_RANGE,
    "brier": (0.0, 2.0),
}
_BY_NAME = {fn.__name__: fn for fn in (*_BATCHED, C.calibration_summary)}


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    if "n_bins" in kwargs:
        kwargs["n_bins"] = check_n_bins(kwargs["n_bins"])
    if "norm" in kwargs:
        check_norm(kwargs["norm"])
    if "binning" in kwargs:
        check_binning(kwargs["binning"])
    if "closed" in kwargs:
        check_closed(kwargs["closed"])


def _result(
    estimate: float,
    batches: list[Batch],
    full: Batch | None,
    *,
    n_boot: int,
    alpha: float,
    seed: int,
    method: str,
    bounds: tuple[float, float],
) -> BootstrapResult:
    """The interval from the replicates of every batch and, for a debiased metric, its value on the data
    (``full``: the batch function applied to the identity resample)."""
    s = torch.cat([b[0] for b in batches]).detach().cpu().double().numpy()
    if not np.isfinite(s).all():
        raise InputError("the metric returned non-finite values on some resamples")
    debiased = debiased_samples = None
    if full is not None and full[1] is not None:
        debiased = float(full[1][0])
        debiased_samples = torch.cat([b[1] for b in batches]).detach().cpu().double().numpy()
    lo, hi = bootstrap_interval(
        float(estimate),
        s,
        alpha=alpha,
        debiased=debiased,
        debiased_samples=debiased_samples,
        bounds=bounds,
        method=method,
    )
    return BootstrapResult(
        estimate=float(estimate),
        low=lo,
        high=hi,
        std=float(s.std(ddof=1)) if n_boot > 1 else 0.0,
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
        samples=s,
        method=method,
        debiased=debiased,
    )


def bootstrap_ci(
    metric_fn: Callable | str,
    *,
    logits=None,
    probs=None,
    labels,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    method: str = "hull",
    **metric_kwargs: Any,
) -> BootstrapResult | dict[str, BootstrapResult]:
    """Bootstrap confidence interval of a metric over the samples (rows).

    The interval (``method="hull"``) is the hull of the percentile interval and the interval of a debiased
    estimator, clipped to the metric's range, so it always contains the estimate; it is meant to cover the
    population value of the metric with the same binning. Binned calibration errors are biased upward and the
    plain percentile interval (``method="percentile"``) can lie wholly above the estimate and miss the truth;
    :mod:`focalcal.metrics.intervals` gives the reasons and the coverage measured on simulated data.

    Args:
        metric_fn: a metric of :mod:`focalcal.metrics` (``ece``, ``adaptive_ece``, ``classwise_ece``, ``mce``,
            ``calibration_error``, ``nll``, ``brier_score``, ``error_rate``, ``accuracy``, or
            ``calibration_summary`` for all summary keys at once), its name as a string, or any callable
            with the same keyword interface (``fn(probs=..., labels=..., **metric_kwargs) -> float``; run in
            a loop over resamples, on probabilities computed once).
        logits / probs: ``[N, K]`` scores (exactly one), torch or numpy.
        labels: ``[N]`` integer class indices.
        n_boot: number of resamples (>= 1).
        alpha: two-sided level (0.05 -> 95%).
        seed: seed of the ``torch.Generator`` drawing the resample indices (same seed, same result).
        method: ``"hull"`` (default) or ``"percentile"`` (``[q(alpha/2), q(1-alpha/2)]`` of the replicates).
        **metric_kwargs: passed to the metric (e.g. ``n_bins=15``, ``norm="l2"``).

    Returns:
        :class:`BootstrapResult`, or ``{key: BootstrapResult}`` for ``calibration_summary`` (every resample
        is shared by all keys).

    Raises:
        ValueError: bad inputs (as the metrics), ``n_boot < 1``, ``alpha`` outside (0, 1), unknown metric name or
            ``method``.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> ci = bootstrap_ci("ece", logits=logits, labels=labels, n_bins=2, n_boot=200, seed=0)
    >>> round(ci.estimate, 4), ci.low <= ci.estimate <= ci.high
    (0.0467, True)
    """
    if isinstance(metric_fn, str):
        if metric_fn not in _BY_NAME:
            raise InputError(f"unknown metric {metric_fn!r}; known: {', '.join(sorted(_BY_NAME))}")
        metric_fn = _BY_NAME[metric_fn]
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot must be an integer >= 1; got {n_boot!r}")
    if not (0 < alpha < 1):
        raise InputError(f"alpha must lie in (0, 1), e.g. 0.05 for a 95% interval; got {alpha!r}")
    if method not in ("hull", "percentile"):
        raise InputError(f"method must be 'hull' or 'percentile'; got {method!r}")
    scores, from_logits = pick_scores(logits, probs)
    y = check_labels(labels, scores.shape[0], scores.shape[1], scores.device)
    kw = dict(metric_kwargs)
    _check_kwargs(kw)
    d = _Data(scores, y, from_logits)
    score_kw = {"logits": scores} if from_logits else {"probs": scores}

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    rows = max(1, CHUNK_ELEMENTS // d.n)  # resamples drawn at once (the random stream does not depend on it)
    block = max(1, CHUNK_ELEMENTS // _resample_width(d, metric_fn, kw))  # resamples computed at once

    def draws():
        for s in range(0, n_boot, rows):
            b = min(rows, n_boot - s)
            yield from torch.randint(0, d.n, (b, d.n), generator=gen).to(scores.device).split(block)

    identity = torch.arange(d.n, device=scores.device)[None]
    settings = {"n_boot": n_boot, "alpha": alpha, "seed": seed, "method": method}

    if metric_fn is C.calibration_summary:
        every_kw = {**_keyword_defaults(metric_fn), **kw}
        n_bins, closed = every_kw["n_bins"], every_kw["closed"]
        fns = {
            "error": lambda idx: _BATCHED[C.error_rate](d, idx),
            "nll": lambda idx: _BATCHED[C.nll](d, idx),
            "ece": lambda idx: _ece_batch(d, idx, n_bins, "l1", closed),
            "adaptive_ece": lambda idx: _adaece_batch(d, idx, n_bins, "l1"),
            "classwise_ece": lambda idx: _classwise_batch(d, idx, n_bins, closed),
            "mce": lambda idx: _mce_batch(d, idx, n_bins, "equal_width", closed),
            "brier": lambda idx: _BATCHED[C.brier_score](d, idx),
        }
        out: dict[str, list[Batch]] = {key: [] for key in fns}
        for idx in draws():
            for key, f in fns.items():
                out[key].append(f(idx))
        point = C.calibration_summary(**score_kw, labels=y, **kw)
        return {
            key: _result(
                point[key],
                v,
                fns[key](identity) if v[0][1] is not None else None,
                bounds=_SUMMARY_BOUNDS[key],
                **settings,
            )
            for key, v in out.items()
        }

    if metric_fn in _BATCHED:
        estimate = metric_fn(**score_kw, labels=y, **kw)
        batched, every_kw = _BATCHED[metric_fn], {**_keyword_defaults(metric_fn), **kw}
        batches = [batched(d, idx, **every_kw) for idx in draws()]
        full = batched(d, identity, **every_kw) if batches[0][1] is not None else None
        return _result(estimate, batches, full, bounds=_BOUNDS[metric_fn], **settings)
    p = d.probs
    estimate = metric_fn(probs=p, labels=y, **kw)
    vals = []
    for idx in draws():
        for row in idx:
            vals.append(float(metric_fn(probs=p[row], labels=y[row], **kw)))
    if not math.isfinite(float(estimate)):
        raise InputError("the metric returned a non-finite value on the data")
    samples = torch.tensor(vals, dtype=torch.float64)
    return _result(estimate, [(samples, None)], None, bounds=UNBOUNDED, **settings)
